"""Applying reconcile rows through the receiver's one apply path.

:func:`decide_rows` loads the state of the rows' users and the holders of the usernames
they claim (inside the caller's write transaction, after the organization row is locked)
and decides them again with :func:`sf_metadata.reconcile.plan_users` (the receiver's
decision); :func:`write_decisions` hands the decisions that write something to
:func:`receiver.provisioning.apply_decisions` with a reconcile source (the provisioning
log and each agent's timeline name the plan), which also ends the sessions of
deprovisioned agents and of agents that became disabled, then records the digests of
the rows applied (``receiver.reconcile.digests``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from receiver.models import Organization
from receiver.provisioning import ApplySource, apply_decisions
from receiver.reconcile.digests import record_digests
from receiver.reconcile.state import WHOLE_ABOVE, load_reconcile_state
from receiver.sessions import EndedSession, SessionHooks
from sf_metadata.decision import Decision
from sf_metadata.reconcile import PlanRow, QueriedUser, ReconcilePlan, plan_users

__all__ = ["Redecided", "decide_rows", "write_decisions"]


@dataclass(frozen=True)
class Redecided:
    """The rows decided again (same order as given)."""

    plan: ReconcilePlan

    @property
    def rows(self) -> list[PlanRow]:
        return list(self.plan.rows)


def _as_user(row: PlanRow) -> QueriedUser:
    return QueriedUser(row.crm_id, row.crm_id, row.agent, row.stamp, row.active, None, row.digest)


def decide_rows(session: Session, organization_id: str, rows: Sequence[PlanRow]) -> Redecided:
    """Decide ``rows`` (those that write, each holding its user as read) again against
    the state stored now."""
    users = [_as_user(r) for r in rows]
    state = load_reconcile_state(
        session, organization_id, users, full=False, whole=len(users) > WHOLE_ABOVE
    )
    plan = plan_users(users, state)
    return Redecided(plan)


def write_decisions(
    session: Session,
    org: Organization,
    plan: ReconcilePlan,
    *,
    plan_id: str,
    item_count: int,
    now: datetime,
    hooks: SessionHooks | None = None,
) -> list[EndedSession]:
    """Write what the decisions of ``plan`` that write something say (nothing when there
    are none), then record the digests of the rows whose stored state is now what their
    record decided (``receiver.reconcile.digests``); returns the sessions ended
    (``hooks`` hear about them after the commit)."""
    decisions = plan.decisions
    applied: Sequence[Decision] = ()
    woken: Sequence[Decision] = ()
    ended: list[EndedSession] = []
    if decisions:
        result = apply_decisions(
            session,
            organization=org,
            decisions=decisions,
            source=ApplySource.reconcile(
                reference=plan_id, item_count=item_count, detail=f"reconcile plan {plan_id}"
            ),
            now=now,
            hooks=hooks,
        )
        applied, woken = result.decisions, result.redecided
        ended = list(result.ended_sessions)
    record_digests(session, org.id, plan.rows, applied, woken)
    return ended
