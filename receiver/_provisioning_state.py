"""Private helpers of ``receiver.provisioning``: lock the organization, load the stored
state of one message (one query per table), replay the decisions on an in-memory copy of
the affected users, and write the difference with set-based statements."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from receiver._state_queries import agents_by_crm_or_username
from receiver.db import insert_rows
from receiver.models import Agent, Organization, ProcessedNotification, Tombstone
from sf_metadata.decision import Action, Decision, StoredState, StoredUser, UserChange
from sf_metadata.errors import NotificationError, OrganizationNotFound
from sf_metadata.ids import USER, try_canonical_id
from sf_metadata.mapping import parse_boolean, username_key
from sf_metadata.metadata_names import SOBJECT_TYPE
from sf_metadata.outbound import Notification

__all__ = [
    "AgentState",
    "TombState",
    "load_state",
    "lock_organization",
    "replay",
    "write_changes",
]


@dataclass(frozen=True, slots=True)
class AgentState:
    id: str
    username: str | None
    stamp: datetime | None
    data: dict[str, Any]
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class TombState:
    agent_id: str | None
    stamp: datetime | None
    deprovisioned_at: datetime


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def lock_organization(session: Session, organization: Organization | str) -> Organization:
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


def load_state(
    session: Session,
    org_id: str,
    notifications: tuple[Notification, ...],
    changes: tuple[UserChange | None, ...],
) -> tuple[StoredState, dict[str, AgentState], dict[str, TombState]]:
    """The stored state of one message; ``changes`` is ``read_user_changes(notifications)``
    (the usernames looked up are those of the readable User notifications)."""
    crm_ids: set[str] = set()
    username_keys: set[str] = set()
    notification_ids: set[str] = set()
    for n, change in zip(notifications, changes, strict=True):
        crm = try_canonical_id(n.record_id, USER)
        if crm is not None:
            crm_ids.add(crm)
        key = username_key(change.agent.username) if change and change.agent else None
        if key is not None:
            username_keys.add(key)
        nid = try_canonical_id(n.notification_id)
        if nid is not None:
            notification_ids.add(nid)

    agents: dict[str, AgentState] = {}
    owners: dict[str, str] = {}
    # Two index searches, not one OR scan of the organization (receiver._state_queries).
    for agent_id, crm, username, key, stamp, data, created in agents_by_crm_or_username(
        session, org_id, crm_ids, username_keys
    ):
        if key is not None and key in username_keys:
            owners[key] = crm
        if crm in crm_ids:
            agents[crm] = AgentState(agent_id, username, stamp, data, created)
    tombs: dict[str, TombState] = {}
    if crm_ids:
        for t in session.exec(
            select(Tombstone).where(
                Tombstone.organization_id == org_id, col(Tombstone.crm_id).in_(crm_ids)
            )
        ).all():
            tombs[t.crm_id] = TombState(t.agent_id, t.system_modstamp, t.deprovisioned_at)
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
            held = agents[crm]
            users[crm] = StoredUser(crm, held.id, True, held.stamp, held.username)
        elif crm in tombs:
            left = tombs[crm]
            users[crm] = StoredUser(crm, left.agent_id, False, left.stamp, None)
    return StoredState(users, owners, processed), agents, tombs


def _is_inactive_user(n: Notification) -> bool:
    if n.sobject_type != SOBJECT_TYPE:
        return False
    try:
        return not parse_boolean("IsActive", n.fields.get("IsActive"))
    except NotificationError:
        return False


def replay(
    decisions: list[Decision],
    notifications: tuple[Notification, ...],
    agents: dict[str, AgentState | None],
    tombs: dict[str, TombState | None],
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
            agents[crm] = AgentState(agent_id, d.agent.username, stamp, d.agent.to_json(), created)
            tombs[crm] = None
        elif d.action is Action.DEPROVISIONED:
            stamp = _later(
                agent.stamp if agent else None, _later(tomb.stamp if tomb else None, d.stamp)
            )
            kept_id = agent.id if agent else (tomb.agent_id if tomb else None)
            tombs[crm] = TombState(kept_id, stamp, now)
            agents[crm] = None
        elif (
            d.action is Action.IGNORED
            and enabled
            and agent is None
            and _is_inactive_user(notifications[d.index])
        ):
            if tomb is None:
                tombs[crm] = TombState(None, d.stamp, now)
            elif _later(tomb.stamp, d.stamp) != tomb.stamp:
                tombs[crm] = replace(tomb, stamp=d.stamp)


def write_changes(
    session: Session,
    org_id: str,
    before_agents: dict[str, AgentState],
    before_tombs: dict[str, TombState],
    agents: dict[str, AgentState | None],
    tombs: dict[str, TombState | None],
    now: datetime,
    order: Mapping[str, int],
) -> list[str]:
    """Set-based writes of the difference; returns the ids of deleted agents.

    Usernames move between agents within one message (handovers, swaps, chains), and the
    unique index (organization, username_key) is checked row by row. So: deleted agents
    go first, then every surviving agent whose username key changes has its username
    cleared (NULL), then the updates and inserts write the final values. The decisions
    guarantee the final usernames do not collide, so no intermediate state can, whatever
    the order; ``order`` (crm id -> index of the applied decision) only makes the order
    of the statements' rows deterministic."""
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
            delete(Agent).where(
                col(Agent.organization_id) == org_id, col(Agent.crm_id).in_(deleted)
            )
        )
    if tomb_gone:
        session.exec(
            delete(Tombstone).where(
                col(Tombstone.organization_id) == org_id, col(Tombstone.crm_id).in_(tomb_gone)
            )
        )
    if tomb_changed:
        session.exec(
            update(Tombstone), params=[_tomb_row(org_id, c, tombs[c]) for c in tomb_changed]
        )
    if tomb_new:
        insert_rows(session, Tombstone, [_tomb_row(org_id, c, tombs[c]) for c in tomb_new])
    renamed = [c for c in updated if _key_of(agents[c]) != _key_of(before_agents[c])]
    if renamed:
        session.exec(
            update(Agent)
            .where(col(Agent.organization_id) == org_id, col(Agent.crm_id).in_(renamed))
            .values(username=None, username_key=None)
        )
    if updated:
        session.exec(
            update(Agent),
            params=[
                {
                    k: v
                    for k, v in _agent_row(org_id, c, agents[c], now).items()
                    if k != "created_at"
                }
                for c in updated
            ],
        )
    if inserted:
        insert_rows(session, Agent, [_agent_row(org_id, c, agents[c], now) for c in inserted])
    return [before_agents[c].id for c in deleted]


def _key_of(a: AgentState | None) -> str | None:
    return username_key(a.username) if a is not None else None


def _tomb_row(org_id: str, crm: str, t: TombState | None) -> dict[str, Any]:
    assert t is not None
    return {
        "organization_id": org_id,
        "crm_id": crm,
        "agent_id": t.agent_id,
        "system_modstamp": t.stamp,
        "deprovisioned_at": t.deprovisioned_at,
    }


def _agent_row(org_id: str, crm: str, a: AgentState | None, now: datetime) -> dict[str, Any]:
    assert a is not None
    return {
        "id": a.id,
        "organization_id": org_id,
        "crm_id": crm,
        "username": a.username,
        "username_key": username_key(a.username),
        "system_modstamp": a.stamp,
        "data": a.data,
        "created_at": a.created_at or now,
        "updated_at": now,
    }
