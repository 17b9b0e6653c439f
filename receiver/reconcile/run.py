"""Reconcile runs: read every User, plan, store the plan, apply it (CONTRACT section 6).

One function per action, shared by the CLI and the dashboard:

- :func:`read_users`: the Salesforce side (``deployer.users.UserReader``): the org check,
  the custom fields, every page; progress in users (``ProgressSink``). Any failure raises
  before anything is written (an unreadable page is never an absence).
- :func:`plan_run`: decide against the stored state (``sf_metadata.reconcile``) and store
  the plan: ``planned`` (a dry run, or a disabled organization: a preview of what
  enabling will do), ``held`` (the deletion guard), else applied at once.
- :func:`apply_plan`: apply a stored plan (planned, or held with approval). In one write
  transaction, with the organization row locked as the webhook locks it: the rows with an
  effect are decided again against the then stored state (a change stored after the plan
  wins, never rolled back), the deletion guard is checked again for a plan not approved,
  and the decisions go through ``receiver.reconcile.apply`` (the receiver's apply path).
  All or nothing.
- :func:`reject_plan`: discard a held (or planned) plan.
"""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from deployer.pages import read_ahead
from deployer.users import UserReader
from receiver.db import transaction
from receiver.organizations import get_organization
from receiver.reconcile.digests import SALT, DigestSnapshot, load_snapshot
from receiver.reconcile.plans import StoredPlan, get_plan, plan_json, save_plan
from receiver.reconcile.state import load_reconcile_state
from receiver.reconcile.tables import ReconcilePlanRecord
from receiver.sessions import SessionHooks
from sf_metadata.changes import parse_stamp
from sf_metadata.errors import AgentProvisionError, PlanNotFound, ReconcileHeld, Setting, UsageError
from sf_metadata.reconcile import (
    COUNT_KEYS,
    DEFAULT_GUARD,
    DeletionGuard,
    KnownUser,
    PlanRow,
    QueriedUser,
    ReadUser,
    count_rows,
    plan_users,
    read_page,
)
from sf_metadata.soql import DEFAULT_OVERLAP, user_query

__all__ = [
    "FULL",
    "INCREMENTAL",
    "ProgressSink",
    "ReadResult",
    "RunResult",
    "apply_plan",
    "gc_paused",
    "last_watermark",
    "plan_run",
    "read_users",
    "reconcile",
    "reject_plan",
    "show_plan",
]

FULL = "full"
INCREMENTAL = "incremental"
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _GcPause:
    """How many runs pause the collector now, and whether it was enabled before them."""

    lock = threading.Lock()
    runs = 0
    was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector paused while a run reads and plans: a 50,000-user
    run builds some million acyclic objects that every collection would scan again (a
    third of its CPU, ``bench/reconcile.py``); reference counting frees them as usual.
    Process-wide, so nested and concurrent runs share one pause (the collector is enabled
    again, if it was, when the last one ends)."""
    with _GcPause.lock:
        if _GcPause.runs == 0:
            _GcPause.was_enabled = gc.isenabled()
            gc.disable()
        _GcPause.runs += 1
    try:
        yield
    finally:
        with _GcPause.lock:
            _GcPause.runs -= 1
            if _GcPause.runs == 0 and _GcPause.was_enabled:
                gc.enable()


class ProgressSink(Protocol):
    """Where a run reports progress, in users: ``total`` once the first page says how
    many, ``advance`` per page read (and per batch applied), ``phase`` on each step
    (``reading``, ``planning``, ``applying``)."""

    def phase(self, name: str) -> None: ...

    def total(self, users: int) -> None: ...

    def advance(self, users: int) -> None: ...


class _NoProgress:
    def phase(self, name: str) -> None:
        pass

    def total(self, users: int) -> None:
        pass

    def advance(self, users: int) -> None:
        pass


#: The SystemModstamp of a record's JSON text as the REST API writes it
#: (``"SystemModstamp":"2026-11-20T10:00:00.000+0000"``): one format, so text order is
#: time order. Only a key is followed by a colon (quotes inside strings are escaped).
_SOQL_STAMP = re.compile(rb'"SystemModstamp"\s*:\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000)"')


def _stamp_of(record: Mapping[str, Any]) -> datetime | None:
    """The ordering stamp of a record vouched for (decided before, so readable)."""
    texts = {
        name: value
        for name in ("SystemModstamp", "LastModifiedDate")
        if type(value := record.get(name)) is str
    }
    try:
        return parse_stamp(texts)
    except AgentProvisionError:
        return None


@dataclass(frozen=True)
class ReadResult:
    """What a read gave: every User decoded (or vouched for as unchanged), the newest
    stamp among them, the calls made, and whether it was a full read."""

    users: list[ReadUser]
    watermark: datetime | None
    api_calls: int
    kind: str


def read_users(
    reader: UserReader,
    *,
    salesforce_org_id: str,
    since: datetime | None = None,
    progress: ProgressSink | None = None,
    digests: Mapping[str, str] | None = None,
    snapshot: DigestSnapshot | None = None,
) -> ReadResult:
    """Read every User (``since`` ``None``) or those changed since ``since`` minus the
    overlap (:data:`~sf_metadata.soql.DEFAULT_OVERLAP`). Each record's JSON text is
    digested as read (``UserReader.raw_pages``); one whose digest is one ``digests``
    (crm id -> digest) or ``snapshot`` holds is kept unparsed and unmapped
    (``sf_metadata.reconcile.read_page``; the plan checks it under the lock). Raises
    :class:`~sf_metadata.errors.SalesforceUnreadable` / ``AuthenticationError``."""
    sink = progress or _NoProgress()
    sink.phase("reading")
    reader.check_organization(salesforce_org_id)
    soql = user_query(reader.custom_fields(), since=since, overlap=DEFAULT_OVERLAP)
    users: list[ReadUser] = []
    watermark: datetime | None = None
    first = True
    # digest -> crm id (a digest's text holds the Id: one user per digest)
    known = (
        snapshot.by_digest
        if snapshot is not None
        else {digest: crm for crm, digest in (digests or {}).items()}
    )
    newest_text = b""  # the newest SystemModstamp text of the users left unparsed
    stamp_in = _SOQL_STAMP.search
    for page in read_ahead(reader.raw_pages(soql)):
        if first:
            sink.total(page.total_size)
            first = False
        read = read_page(page.records, known, SALT, page.parse)
        users += read
        # The page's newest stamp, in passes over it (no loop per record when all are
        # known): the decoded users' own, the known ones' SystemModstamp text.
        stamps = [u.stamp for u in read if isinstance(u, QueriedUser) and u.stamp is not None]
        raws = [u.raw for u in read if isinstance(u, KnownUser)]
        found = list(map(stamp_in, raws))
        texts = [m.group(1) for m in found if m is not None]
        if len(texts) != len(raws):  # another format: read from the parsed record
            stamps += [
                stamp
                for raw, m in zip(raws, found, strict=True)
                if m is None and (stamp := _stamp_of(page.parse(raw))) is not None
            ]
        if texts:
            newest_text = max(newest_text, max(texts))
        if stamps:
            newest = max(stamps)
            watermark = newest if watermark is None or newest > watermark else watermark
        sink.advance(len(page.records))
    if newest_text:
        stamp = _stamp_of({"SystemModstamp": newest_text.decode()})
        if stamp is not None and (watermark is None or stamp > watermark):
            watermark = stamp
    return ReadResult(
        users, watermark, reader.counter.calls, FULL if since is None else INCREMENTAL
    )


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


def last_watermark(session: Session, organization_id: str) -> datetime | None:
    """The newest SystemModstamp of an applied plan of the organization (the start of the
    next incremental read), or ``None`` (then the next run is a full one)."""
    return session.exec(
        select(ReconcilePlanRecord.watermark)
        .where(
            ReconcilePlanRecord.organization_id == organization_id,
            ReconcilePlanRecord.status == "applied",
            col(ReconcilePlanRecord.watermark).is_not(None),
        )
        .order_by(col(ReconcilePlanRecord.watermark).desc())
        .limit(1)
    ).first()


def plan_run(
    engine: Engine,
    organization: str,
    read: ReadResult,
    *,
    dry_run: bool = False,
    guard: DeletionGuard = DEFAULT_GUARD,
    progress: ProgressSink | None = None,
    clock: Clock = _utc_now,
    hooks: SessionHooks | None = None,
    snapshot: DigestSnapshot | None = None,
) -> RunResult:
    """Plan ``read`` against the stored state, store the plan, and apply it unless it is a
    dry run, the feature is disabled (status ``planned``) or the guard holds it
    (``held``: nothing written but the plan); ``snapshot``: the digests the read was
    given (``receiver.reconcile.digests.revouch``). Applying plans and writes in one
    transaction with the organization row locked (as the webhook locks it), so what is
    applied is exactly what was planned against the state it writes over. Raises
    ``OrganizationNotFound``, ``StoreUnavailable``."""
    from receiver.provisioning import lock_organization
    from receiver.reconcile.apply import write_decisions

    sink = progress or _NoProgress()
    sink.phase("planning")
    with transaction(engine, read_only=True) as session:
        enabled = get_organization(session, organization).enabled
    preview = dry_run or not enabled
    if not preview:
        # Reported before the write transaction: a sink may write to the store itself.
        sink.phase("applying")
    ended: list[Any] = []
    with transaction(engine, read_only=preview) as session:
        if preview:
            org = get_organization(session, organization)
        else:
            org = lock_organization(session, organization)
            enabled = org.enabled
        state = load_reconcile_state(
            session, org.id, read.users, full=read.kind == FULL, snapshot=snapshot
        )
        previous = last_watermark(session, org.id)
        plan = plan_users(read.users, state)
        hold = guard.hold_reason(plan.counts["deprovision"], state.agent_count)
        detail = None
        if not enabled:
            status = "planned"
            detail = "the feature is disabled: a preview of what enabling will do"
        elif dry_run:
            status, detail = "planned", "dry run"
            if hold is not None:
                detail = f"dry run; applying it would be held: {hold}"
        elif hold is not None:
            status = "held"
        else:
            status = "applied"
        watermark = read.watermark
        if watermark is None or (previous is not None and previous > watermark):
            watermark = previous
        # A preview's transaction is read-only: its plan is saved in its own, below.
        if not preview:
            record = save_plan(
                session,
                organization_id=org.id,
                plan=plan,
                kind=read.kind,
                status=status,
                now=clock(),
                api_calls=read.api_calls,
                users_read=len(read.users),
                agents_before=state.agent_count,
                watermark=watermark,
                hold_reason=hold if status == "held" else None,
                detail=detail,
                max_deletions=guard.max_deletions,
            )
            if status == "applied":
                ended = write_decisions(
                    session,
                    org,
                    plan,
                    plan_id=record.id,
                    item_count=len(read.users),
                    now=clock(),
                    hooks=hooks,
                )
                record.applied_counts = dict(plan.counts)
                record.applied_at = clock()
                session.add(record)
    if preview:
        with transaction(engine) as session:
            record = save_plan(
                session,
                organization_id=organization,
                plan=plan,
                kind=read.kind,
                status=status,
                now=clock(),
                api_calls=read.api_calls,
                users_read=len(read.users),
                agents_before=state.agent_count,
                watermark=watermark,
                detail=detail,
                max_deletions=guard.max_deletions,
            )
    del ended
    return RunResult(
        record.id, status, dict(plan.counts), read.api_calls, record.hold_reason, detail
    )


def apply_plan(
    engine: Engine,
    organization: str,
    plan_id: str,
    *,
    approve_deletions: bool = False,
    guard: DeletionGuard | None = None,
    progress: ProgressSink | None = None,
    clock: Clock = _utc_now,
    hooks: SessionHooks | None = None,
) -> RunResult:
    """Apply stored plan ``plan_id`` (module docstring). Returns status ``applied`` with
    the counts of what was applied, or ``held`` (the plan was held, or deciding it again
    now deprovisions more than the guard allows: nothing written; the plan is held).

    Raises :class:`PlanNotFound` (none, or already applied or rejected),
    :class:`ReconcileHeld` (a held plan without ``approve_deletions``),
    :class:`~sf_metadata.errors.UsageError` (the feature is disabled), ``StoreUnavailable``.
    """
    from receiver.reconcile.apply import decide_rows, write_decisions

    sink = progress or _NoProgress()
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
    engine: Engine, organization: str, plan_id: str, *, clock: Clock = _utc_now
) -> StoredPlan:
    """Discard a held or planned plan (status ``rejected``; nothing written). Raises
    :class:`PlanNotFound` for an unknown, applied or already rejected plan."""
    with transaction(engine) as session:
        org = get_organization(session, organization)
        stored = get_plan(session, org.id, plan_id, for_update=True)
        if stored.record.status in ("applied", "rejected"):
            raise PlanNotFound(
                f"reconcile plan {plan_id} was already {stored.record.status}: nothing to reject"
            )
        stored.record.status = "rejected"
        stored.record.detail = f"rejected at {clock().isoformat()}"
        session.add(stored.record)
        return stored


def show_plan(engine: Engine, organization: str, plan_id: str) -> dict[str, Any]:
    """``reconcile show --json`` of a stored plan."""
    with transaction(engine, read_only=True) as session:
        org = get_organization(session, organization)
        return plan_json(get_plan(session, org.id, plan_id))


def reconcile(
    engine: Engine,
    organization: str,
    reader: UserReader,
    *,
    full: bool = True,
    dry_run: bool = False,
    guard: DeletionGuard = DEFAULT_GUARD,
    progress: ProgressSink | None = None,
    clock: Clock = _utc_now,
    hooks: SessionHooks | None = None,
) -> RunResult:
    """One run: read (every User, or with ``full=False`` those changed since the last
    applied watermark; a full read when there is none), plan, store, apply (see
    :func:`plan_run`). The one function behind ``reconcile run``, the Reconcile page's
    buttons, ``org enable`` and the scheduler."""
    with gc_paused():
        with transaction(engine, read_only=True) as session:
            org = get_organization(session, organization)
            salesforce_org_id = org.salesforce_org_id
            since = None if full else last_watermark(session, org.id)
            snapshot = load_snapshot(session, org.id)
        read = read_users(
            reader,
            salesforce_org_id=salesforce_org_id,
            since=since,
            progress=progress,
            snapshot=snapshot,
        )
        return plan_run(
            engine,
            organization,
            read,
            dry_run=dry_run,
            guard=guard,
            progress=progress,
            clock=clock,
            hooks=hooks,
            snapshot=snapshot,
        )
