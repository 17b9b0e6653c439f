"""The provisioning transaction: apply one Outbound Message to the agent store.

:func:`apply_message` runs inside the caller's transaction (``receiver.db.transaction``):

1. lock the organization row (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite's write
   transaction already began ``BEGIN IMMEDIATE``), so two deliveries for one organization
   serialize: no lost update, no duplicate agent (``docs/architecture.md``);
2. load a :class:`~sf_metadata.decision.StoredState` with one query per table (agents by crm
   id or username key, tombstones, processed notification ids; ids canonicalised to 18
   characters with ``sf_metadata.ids``);
3. decide with the pure :func:`~sf_metadata.decision.plan_message` (CONTRACT section 2);
4. write the result with set-based statements (bulk insert / update / delete): agents
   created, updated or restored (a restore re-inserts the SAME agent id, kept in the
   tombstone); a deprovision deletes the agent, keeps a tombstone (crm id, agent id,
   SystemModstamp) and ends all the agent's sessions (reason ``"deprovisioned"``); an
   ignored inactive user gets a tombstone holding its stamp (never lowered), so a late,
   older "active" message stays stale; processed notification ids; the provisioning log
   (one ``provisioning_message``, one ``provisioning_event`` per notification).

Nothing is committed here. Session-ended hooks must run only after the commit: pass
``hooks`` (they fire from the session's ``after_commit``), or use :func:`apply_and_commit`.
If the store fails mid-way the whole transaction rolls back (``StoreUnavailable``) and a
retry of the same message applies it exactly once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from receiver.db import transaction
from receiver.models import Agent, Organization, ProcessedNotification, Tombstone
from receiver.provisioning_log import record_events, record_message
from receiver.sessions import END_REASON_DEPROVISIONED, EndedSession, SessionHooks, end_agent_sessions
from sf_metadata.decision import Action, Decision, StoredState, StoredUser, plan_message
from sf_metadata.errors import InvalidSalesforceId, NotificationError, OrganizationNotFound
from sf_metadata.ids import USER, canonical_id
from sf_metadata.mapping import agent_username, parse_boolean
from sf_metadata.metadata_names import SOBJECT_TYPE
from sf_metadata.outbound import Notification, OutboundMessage

__all__ = [
    "OUTCOME_EMPTY",
    "OUTCOME_IGNORED",
    "OUTCOME_PROCESSED",
    "MessageResult",
    "apply_and_commit",
    "apply_message",
    "prune_processed",
]

OUTCOME_PROCESSED = "processed"
OUTCOME_IGNORED = "ignored"
OUTCOME_EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What one message did.

    - ``message_id``: the ``provisioning_message`` id of its log entry.
    - ``outcome``: ``"processed"``, ``"ignored"`` (feature disabled) or ``"empty"``.
    - ``counts``: number of notifications per :class:`~sf_metadata.decision.Action`.
    - ``decisions``: one per notification, in document order.
    - ``ended_sessions``: sessions ended by deprovisioning (for the hooks, after commit).
    """

    message_id: int
    outcome: str
    counts: Mapping[Action, int]
    decisions: tuple[Decision, ...]
    ended_sessions: tuple[EndedSession, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class _AgentState:
    id: str
    username: str | None
    stamp: datetime | None
    data: dict[str, Any]
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class _TombState:
    agent_id: str | None
    stamp: datetime | None
    deprovisioned_at: datetime


def _canon(value: str | None, prefix: str | None = None) -> str | None:
    if value is None:
        return None
    try:
        return canonical_id(value.strip(), prefix)
    except InvalidSalesforceId:
        return None


def _username_key(username: str | None) -> str | None:
    return username.casefold() if username else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _lock_organization(session: Session, organization: Organization | str) -> Organization:
    name = organization if isinstance(organization, str) else organization.id
    org = session.exec(
        select(Organization)
        .where(Organization.id == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if org is None:
        raise OrganizationNotFound(f"organization {name!r} is not registered")
    return org


def _load_state(
    session: Session, org_id: str, notifications: tuple[Notification, ...]
) -> tuple[StoredState, dict[str, _AgentState], dict[str, _TombState]]:
    crm_ids: set[str] = set()
    username_keys: set[str] = set()
    notification_ids: set[str] = set()
    for n in notifications:
        crm = _canon(n.record_id, USER)
        if crm is not None:
            crm_ids.add(crm)
        key = _username_key(agent_username(n.fields))
        if key is not None:
            username_keys.add(key)
        nid = _canon(n.notification_id)
        if nid is not None:
            notification_ids.add(nid)

    agents: dict[str, _AgentState] = {}
    owners: dict[str, str] = {}
    if crm_ids or username_keys:
        rows = session.exec(
            select(Agent).where(
                Agent.organization_id == org_id,
                or_(col(Agent.crm_id).in_(crm_ids), col(Agent.username_key).in_(username_keys)),
            )
        ).all()
        for a in rows:
            if a.username_key is not None and a.username_key in username_keys:
                owners[a.username_key] = a.crm_id
            if a.crm_id in crm_ids:
                agents[a.crm_id] = _AgentState(
                    a.id, a.username, a.system_modstamp, a.data, a.created_at
                )
    tombs: dict[str, _TombState] = {}
    if crm_ids:
        for t in session.exec(
            select(Tombstone).where(
                Tombstone.organization_id == org_id, col(Tombstone.crm_id).in_(crm_ids)
            )
        ).all():
            tombs[t.crm_id] = _TombState(t.agent_id, t.system_modstamp, t.deprovisioned_at)
    processed: frozenset[str] = frozenset()
    if notification_ids:
        processed = frozenset(
            session.exec(
                select(ProcessedNotification.notification_id).where(
                    ProcessedNotification.organization_id == org_id,
                    col(ProcessedNotification.notification_id).in_(notification_ids),
                )
            ).all()
        )
    users: dict[str, StoredUser] = {}
    for crm in crm_ids:
        if crm in agents:
            a = agents[crm]
            users[crm] = StoredUser(crm, a.id, True, a.stamp, a.username)
        elif crm in tombs:
            t = tombs[crm]
            users[crm] = StoredUser(crm, t.agent_id, False, t.stamp, None)
    return StoredState(users, owners, processed), agents, tombs


def _is_inactive_user(n: Notification) -> bool:
    if n.sobject_type != SOBJECT_TYPE:
        return False
    try:
        return not parse_boolean("IsActive", n.fields.get("IsActive"))
    except NotificationError:
        return False


def _replay(
    decisions: list[Decision],
    notifications: tuple[Notification, ...],
    agents: dict[str, _AgentState | None],
    tombs: dict[str, _TombState | None],
    *,
    enabled: bool,
    now: datetime,
) -> None:
    """Apply the decisions, in document order, to the in-memory per-user state."""
    for d in decisions:
        crm = d.crm_id
        if crm is None:
            continue
        agent, tomb = agents.get(crm), tombs.get(crm)
        if d.action in (Action.CREATED, Action.UPDATED, Action.RESTORED) and d.agent is not None:
            if agent is not None:
                agent_id, created = agent.id, agent.created_at
            else:
                agent_id = tomb.agent_id if tomb and tomb.agent_id else uuid.uuid4().hex
                created = None
            stamp = _later(agent.stamp if agent else (tomb.stamp if tomb else None), d.stamp)
            agents[crm] = _AgentState(agent_id, d.agent.username, stamp, d.agent.to_json(), created)
            tombs[crm] = None
        elif d.action is Action.DEPROVISIONED:
            stamp = _later(agent.stamp if agent else None, _later(tomb.stamp if tomb else None, d.stamp))
            agent_id = agent.id if agent else (tomb.agent_id if tomb else None)
            tombs[crm] = _TombState(agent_id, stamp, now)
            agents[crm] = None
        elif (
            d.action is Action.IGNORED
            and enabled
            and agent is None
            and _is_inactive_user(notifications[d.index])
        ):
            if tomb is None:
                tombs[crm] = _TombState(None, d.stamp, now)
            elif _later(tomb.stamp, d.stamp) != tomb.stamp:
                tombs[crm] = replace(tomb, stamp=d.stamp)


def _write(
    session: Session,
    org_id: str,
    before_agents: dict[str, _AgentState],
    before_tombs: dict[str, _TombState],
    agents: dict[str, _AgentState | None],
    tombs: dict[str, _TombState | None],
    now: datetime,
    order: Mapping[str, int],
) -> list[str]:
    """Set-based writes of the difference, agents in document order (so a username
    released earlier in the message is free when a later notification takes it); returns
    the ids of deleted agents."""
    deleted = [c for c, a in agents.items() if a is None and c in before_agents]
    inserted = sorted(
        (c for c, a in agents.items() if a is not None and c not in before_agents),
        key=lambda c: order.get(c, -1),
    )
    updated = sorted(
        (
            c
            for c, a in agents.items()
            if a is not None and c in before_agents and a != before_agents[c]
        ),
        key=lambda c: order.get(c, -1),
    )
    tomb_gone = [c for c, t in tombs.items() if t is None and c in before_tombs]
    tomb_new = [c for c, t in tombs.items() if t is not None and c not in before_tombs]
    tomb_changed = [
        c for c, t in tombs.items() if t is not None and c in before_tombs and t != before_tombs[c]
    ]
    if deleted:
        session.exec(
            delete(Agent).where(Agent.organization_id == org_id, col(Agent.crm_id).in_(deleted))
        )
    if tomb_gone:
        session.exec(
            delete(Tombstone).where(
                Tombstone.organization_id == org_id, col(Tombstone.crm_id).in_(tomb_gone)
            )
        )
    if tomb_changed:
        session.exec(
            update(Tombstone), params=[_tomb_row(org_id, c, tombs[c]) for c in tomb_changed]
        )
    if tomb_new:
        session.exec(insert(Tombstone), params=[_tomb_row(org_id, c, tombs[c]) for c in tomb_new])
    if updated:
        session.exec(
            update(Agent),
            params=[
                {k: v for k, v in _agent_row(org_id, c, agents[c], now).items() if k != "created_at"}
                for c in updated
            ],
        )
    if inserted:
        session.exec(
            insert(Agent), params=[_agent_row(org_id, c, agents[c], now) for c in inserted]
        )
    return [before_agents[c].id for c in deleted]


def _tomb_row(org_id: str, crm: str, t: _TombState | None) -> dict[str, Any]:
    assert t is not None
    return {
        "organization_id": org_id,
        "crm_id": crm,
        "agent_id": t.agent_id,
        "system_modstamp": t.stamp,
        "deprovisioned_at": t.deprovisioned_at,
    }


def _agent_row(org_id: str, crm: str, a: _AgentState | None, now: datetime) -> dict[str, Any]:
    assert a is not None
    return {
        "id": a.id,
        "organization_id": org_id,
        "crm_id": crm,
        "username": a.username,
        "username_key": _username_key(a.username),
        "system_modstamp": a.stamp,
        "data": a.data,
        "created_at": a.created_at or now,
        "updated_at": now,
    }


def apply_message(
    session: Session,
    *,
    organization: Organization | str,
    message: OutboundMessage,
    now: datetime,
    hooks: SessionHooks | None = None,
) -> MessageResult:
    """Apply ``message`` (already checked to belong to ``organization``) in the caller's
    transaction; see the module docstring. ``now`` is an aware UTC datetime.

    Raises :class:`~sf_metadata.errors.OrganizationNotFound` if the organization is gone,
    and whatever the session raises (``receiver.db.transaction`` maps transient failures to
    :class:`~sf_metadata.errors.StoreUnavailable`).
    """
    org = _lock_organization(session, organization)
    notifications = tuple(message.notifications)
    state, before_agents, before_tombs = _load_state(session, org.id, notifications)
    decisions = list(plan_message(notifications, state, feature_enabled=org.enabled))

    agents: dict[str, _AgentState | None] = dict(before_agents)
    tombs: dict[str, _TombState | None] = dict(before_tombs)
    _replay(decisions, notifications, agents, tombs, enabled=org.enabled, now=now)
    order = {d.crm_id: d.index for d in decisions if d.crm_id is not None}
    deleted_agent_ids = _write(
        session, org.id, before_agents, before_tombs, agents, tombs, now, order
    )
    ended = end_agent_sessions(
        session, agent_ids=deleted_agent_ids, now=now, reason=END_REASON_DEPROVISIONED
    )

    new_ids = sorted(
        {
            d.notification_id
            for d in decisions
            if d.mark_processed
            and d.notification_id is not None
            and d.notification_id not in state.processed_ids
        }
    )
    if new_ids:
        session.exec(
            insert(ProcessedNotification),
            params=[
                {"organization_id": org.id, "notification_id": nid, "processed_at": now}
                for nid in new_ids
            ],
        )

    if not notifications:
        outcome, detail = OUTCOME_EMPTY, "the message holds no notifications"
    elif not org.enabled:
        outcome, detail = OUTCOME_IGNORED, "the feature is disabled for this organization"
    else:
        outcome, detail = OUTCOME_PROCESSED, None
    message_id = record_message(
        session,
        organization_id=org.id,
        received_at=now,
        outcome=outcome,
        action_id=message.action_id,
        notification_count=len(notifications),
        detail=detail,
    )
    record_events(session, message_id=message_id, decisions=decisions)
    if hooks is not None:
        hooks.fire_after_commit(session, ended)
    return MessageResult(
        message_id=message_id,
        outcome=outcome,
        counts=dict(Counter(d.action for d in decisions)),
        decisions=tuple(decisions),
        ended_sessions=tuple(ended),
    )


def apply_and_commit(
    engine: Engine,
    *,
    organization: Organization | str,
    message: OutboundMessage,
    now: datetime,
    hooks: SessionHooks | None = None,
) -> MessageResult:
    """:func:`apply_message` in its own transaction, committed; then the hooks hear about
    the ended sessions. Raises :class:`~sf_metadata.errors.StoreUnavailable` (nothing
    applied) and :class:`~sf_metadata.errors.OrganizationNotFound`."""
    with transaction(engine) as session:
        result = apply_message(session, organization=organization, message=message, now=now)
    if hooks is not None:
        hooks.fire(result.ended_sessions)
    return result


def prune_processed(session: Session, *, older_than: datetime) -> int:
    """Forget processed notification ids recorded before ``older_than`` (retention: at least
    48 hours, default 7 days, ``Settings.processed_retention_hours``); returns how many."""
    result = session.exec(
        delete(ProcessedNotification).where(col(ProcessedNotification.processed_at) < older_than)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
