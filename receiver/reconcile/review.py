"""Acting on a stored reconcile plan (CONTRACT section 6), shared by the CLI and the
dashboard:

- :func:`apply_plan`: apply a stored plan (planned, or held with approval). In one write
  transaction, with the organization row locked as the webhook locks it: the rows with an
  effect are decided again against the then stored state (a change stored after the plan
  wins, never rolled back), the deletion guard is checked again for a plan not approved,
  and the decisions go through ``receiver.reconcile.apply`` (the receiver's apply path).
  All or nothing.
- :func:`reject_plan`: discard a held (or planned) plan; :func:`show_plan`: read it.
- :class:`RunResult`: what a run (``receiver.reconcile.run``) or an apply gives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Engine

from receiver.db import transaction
from receiver.organizations import get_organization
from receiver.reconcile.plans import StoredPlan, applied_note, get_plan, plan_json
from receiver.reconcile.progress import Clock, NoProgress, ProgressSink, gc_paused, utc_now
from receiver.sessions import SessionHooks
from sf_metadata.errors import PlanNotFound, ReconcileHeld, Setting, UsageError
from sf_metadata.reconcile import COUNT_KEYS, DEFAULT_GUARD, DeletionGuard, PlanRow, count_rows

__all__ = ["RunResult", "apply_plan", "reject_plan", "show_plan"]


@dataclass(frozen=True)
class RunResult:
    """A run's or an apply's result: ``counts`` are the plan's, or what was applied."""

    plan_id: str
    status: str
    counts: dict[str, int]
    api_calls: int
    hold_reason: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"planId", "status", "counts", "apiCalls"}`` (CONTRACT section 6)."""
        return {
            "planId": self.plan_id,
            "status": self.status,
            "counts": {k: self.counts.get(k, 0) for k in COUNT_KEYS},
            "apiCalls": self.api_calls,
        }


def apply_plan(
    engine: Engine,
    organization: str,
    plan_id: str,
    *,
    approve_deletions: bool = False,
    guard: DeletionGuard | None = None,
    progress: ProgressSink | None = None,
    clock: Clock = utc_now,
    hooks: SessionHooks | None = None,
    actor: str | None = None,
) -> RunResult:
    """Apply stored plan ``plan_id`` (module docstring), by ``actor`` (recorded as the
    plan's ``decided_by``, with ``decided_at``). Returns status ``applied`` with
    the counts of what was applied, or ``held`` (the plan was held, or deciding it again
    now deprovisions more than the guard allows: nothing written; the plan is held).

    Raises :class:`PlanNotFound` (none, or already applied or rejected),
    :class:`ReconcileHeld` (a held plan without ``approve_deletions``),
    :class:`~sf_metadata.errors.UsageError` (the feature is disabled), ``StoreUnavailable``.
    """
    from receiver.reconcile.apply import decide_rows, write_decisions

    sink = progress or NoProgress()
    sink.phase("applying")  # before the write transaction (see plan_run)
    ended: list[Any] = []
    with gc_paused(), transaction(engine) as session:
        from receiver.provisioning import lock_organization

        org = lock_organization(session, organization)
        stored = get_plan(session, org.id, plan_id, for_update=True)
        record = stored.record
        if record.status in ("applied", "rejected"):
            raise PlanNotFound(
                f"reconcile plan {plan_id} was already {record.status}: run "
                f"`agent-provision reconcile run {organization}` for a new plan"
            )
        if not org.enabled:
            raise UsageError(
                f"the feature is disabled for {organization}: enable it "
                f"(`agent-provision org enable {organization}`) before applying a plan"
            )
        if record.status == "held" and not approve_deletions:
            raise ReconcileHeld(
                f"reconcile plan {plan_id} is held: {record.hold_reason}; approve its "
                "deletions to apply it, or reject it",
                plan_id=plan_id,
                setting=Setting.APPROVAL,
            )
        todo = [r for r in stored.rows if r.writes]
        redecided = decide_rows(session, org.id, todo)
        new_rows = _merge(stored.rows, todo, redecided.rows)
        counts = count_rows(new_rows, len(stored.not_found))
        limits = guard or replace(DEFAULT_GUARD, max_deletions=record.max_deletions)
        hold = limits.hold_reason(counts["deprovision"], record.agents_before)
        planned = int(record.counts.get("deprovision", 0))
        if approve_deletions:
            # An approval covers the deprovisions the admin read in the plan, no more.
            hold = (
                None
                if counts["deprovision"] <= planned
                else f"deciding the plan again now deprovisions {counts['deprovision']} "
                f"agents, more than the {planned} approved: read the plan again"
            )
        if hold is not None:
            record.status = "held"
            record.hold_reason = hold
            session.add(record)
            return RunResult(plan_id, "held", counts, record.api_calls, hold, record.detail)
        ended = write_decisions(
            session,
            org,
            redecided.plan,
            plan_id=plan_id,
            item_count=record.users_read,
            now=clock(),
            hooks=hooks,
        )
        record.status = "applied"
        record.applied_counts = counts
        record.applied_at = clock()
        record.detail = applied_note(record.detail)
        record.decided_by = actor[:340] if actor else None
        record.decided_at = record.applied_at
        session.add(record)
        result = RunResult(plan_id, "applied", counts, record.api_calls, None, record.detail)
    del ended
    return result


def _merge(
    rows: tuple[PlanRow, ...], todo: list[PlanRow], redecided: list[PlanRow]
) -> list[PlanRow]:
    """``rows`` with each row of ``todo`` replaced by its new decision."""
    by_id = {id(old): new for old, new in zip(todo, redecided, strict=True)}
    return [by_id.get(id(r), r) for r in rows]


def reject_plan(
    engine: Engine,
    organization: str,
    plan_id: str,
    *,
    clock: Clock = utc_now,
    actor: str | None = None,
) -> StoredPlan:
    """Discard a held or planned plan (status ``rejected``; nothing written), by
    ``actor`` (the plan's ``decided_by``). Raises
    :class:`PlanNotFound` for an unknown, applied or already rejected plan."""
    with transaction(engine) as session:
        org = get_organization(session, organization)
        stored = get_plan(session, org.id, plan_id, for_update=True)
        if stored.record.status in ("applied", "rejected"):
            raise PlanNotFound(
                f"reconcile plan {plan_id} was already {stored.record.status}: nothing to reject"
            )
        stored.record.status = "rejected"
        # when and by whom are decided_at and decided_by (no note "rejected at ..." twice)
        stored.record.decided_by = actor[:340] if actor else None
        stored.record.decided_at = clock()
        session.add(stored.record)
        return stored


def show_plan(engine: Engine, organization: str, plan_id: str) -> dict[str, Any]:
    """``reconcile show --json`` of a stored plan."""
    with transaction(engine, read_only=True) as session:
        org = get_organization(session, organization)
        return plan_json(get_plan(session, org.id, plan_id))
