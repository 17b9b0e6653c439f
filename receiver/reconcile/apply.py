"""Applying reconcile rows: decide them again against the stored state, then write.

:func:`decide_rows` loads the state of the rows' users and the holders of the usernames
they claim (inside the caller's write transaction, after the organization row is locked)
and decides them again with :func:`sf_metadata.reconcile.plan_users`; :func:`write_decisions`
writes the result and logs it (``provisioning_message`` with detail ``reconcile plan
<id>``, one ``provisioning_event`` per applied row, in the receiver's action words).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from receiver._provisioning_state import AgentState, TombState, write_changes
from receiver.models import Organization
from receiver.outcomes import MessageOutcome
from receiver.provisioning_log import record_events, record_message
from receiver.reconcile.state import load_reconcile_state
from receiver.sessions import END_REASON_DEPROVISIONED, EndedSession, end_agent_sessions
from sf_metadata.decision import Action, Decision
from sf_metadata.reconcile import (
    Effect,
    PlanRow,
    QueriedUser,
    ReconcileAction,
    ReconcileState,
    plan_users,
)

__all__ = ["LOG_ACTIONS", "Redecided", "decide_rows", "write_decisions"]

#: Reconcile actions in the provisioning log's words.
LOG_ACTIONS = {
    ReconcileAction.CREATE: Action.CREATED,
    ReconcileAction.UPDATE: Action.UPDATED,
    ReconcileAction.RESTORE: Action.RESTORED,
    ReconcileAction.DEPROVISION: Action.DEPROVISIONED,
    ReconcileAction.UNCHANGED: Action.IGNORED,
    ReconcileAction.FAILED: Action.FAILED,
}


@dataclass(frozen=True)
class Redecided:
    """The rows decided again (same order as given) and the state they were decided on."""

    rows: list[PlanRow]
    state: ReconcileState


def _as_user(row: PlanRow) -> QueriedUser:
    return QueriedUser(row.crm_id, row.crm_id, row.agent, row.stamp, row.active, None)


def decide_rows(session: Session, organization_id: str, rows: Sequence[PlanRow]) -> Redecided:
    """Decide ``rows`` (those with an effect, each holding its user as read) again
    against the state stored now."""
    users = [_as_user(r) for r in rows]
    state = load_reconcile_state(session, organization_id, users, full=False)
    plan = plan_users(users, state)
    return Redecided(list(plan.rows), state)


def write_decisions(
    session: Session,
    org: Organization,
    redecided: Redecided,
    *,
    plan_id: str,
    item_count: int,
    now: datetime,
) -> list[EndedSession]:
    """Write the rows' effects, end the sessions of deprovisioned agents, and log the
    applied rows; returns the sessions ended (for the hooks, after the commit)."""
    state = redecided.state
    before_agents: dict[str, AgentState] = {}
    before_tombs: dict[str, TombState] = {}
    for crm, held in state.users.items():
        if held.provisioned:
            before_agents[crm] = AgentState(
                held.agent_id or "", held.username, held.stamp, dict(held.data or {}), None
            )
    agents: dict[str, AgentState | None] = dict(before_agents)
    tombs: dict[str, TombState | None] = {}
    applied: list[PlanRow] = []
    for row in redecided.rows:
        if row.effect is Effect.NONE:
            continue
        s = state.users.get(row.crm_id)
        if s is not None and s.has_tombstone:
            tomb = TombState(s.agent_id, s.stamp, now)
            before_tombs[row.crm_id] = tomb
            tombs.setdefault(row.crm_id, tomb)
        if row.effect is Effect.UPSERT and row.agent is not None:
            agent_id = s.agent_id if s is not None and s.agent_id else uuid.uuid4().hex
            stamp = _later(s.stamp if s else None, row.stamp)
            agents[row.crm_id] = AgentState(
                agent_id, row.agent.username, stamp, row.agent.to_json(), None
            )
            tombs[row.crm_id] = None
        elif row.effect is Effect.TOMBSTONE:
            stamp = _later(s.stamp if s else None, row.stamp)
            agents[row.crm_id] = None
            tombs[row.crm_id] = TombState(s.agent_id if s else None, stamp, now)
        applied.append(row)
    # Agents that exist keep created_at: write_changes only updates changed rows.
    for crm in list(agents):
        if crm not in before_agents and agents[crm] is None:
            del agents[crm]
    order = {r.crm_id: i for i, r in enumerate(applied)}
    deleted = write_changes(session, org.id, before_agents, before_tombs, agents, tombs, now, order)
    ended = end_agent_sessions(session, agent_ids=deleted, now=now, reason=END_REASON_DEPROVISIONED)
    logged = [r for r in applied if r.action is not ReconcileAction.UNCHANGED]
    if logged:
        message_id = record_message(
            session,
            organization_id=org.id,
            received_at=now,
            outcome=MessageOutcome.PROCESSED,
            notification_count=item_count,
            detail=f"reconcile plan {plan_id}",
        )
        record_events(
            session,
            message_id=message_id,
            decisions=[_log_decision(i, r) for i, r in enumerate(logged)],
        )
    return ended


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _log_decision(index: int, row: PlanRow) -> Decision:
    return Decision(
        index,
        None,
        row.crm_id,
        LOG_ACTIONS[row.action],
        f"reconcile: {row.reason}",
        row.stamp,
        row.agent,
        False,
    )
