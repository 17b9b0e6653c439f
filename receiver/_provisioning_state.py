"""Private helpers of ``receiver.provisioning``: lock the organization and load the
stored state a batch of user changes is decided against (one query per table, never one
per change). They read; they decide nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from receiver._state_queries import (
    agents_by_crm_or_username,
    parked_rows_of,
    processed_of,
    tombstones_of,
)
from receiver.models import Organization
from sf_metadata.decision import StoredState, StoredUser, UserChange
from sf_metadata.effects import ParkedChange
from sf_metadata.errors import OrganizationNotFound
from sf_metadata.ids import USER, try_canonical_id
from sf_metadata.mapping import username_key
from sf_metadata.outbound import Notification

__all__ = [
    "StateKeys",
    "load_parked",
    "load_state",
    "lock_organization",
    "message_keys",
]


#: The organization row by name, locked (built once: building it cost about a third of
#: the read, per message).
_LOCK_ORGANIZATION = (
    select(Organization)
    .where(col(Organization.id) == bindparam("name"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


def lock_organization(session: Session, organization: Organization | str) -> Organization:
    """The organization row, locked for the transaction (PostgreSQL ``SELECT ... FOR
    UPDATE``; SQLite's write transaction began ``BEGIN IMMEDIATE``). Raises
    :class:`~sf_metadata.errors.OrganizationNotFound`."""
    name = organization if isinstance(organization, str) else organization.id
    org = session.exec(_LOCK_ORGANIZATION, params={"name": name}).one_or_none()
    if org is None:
        raise OrganizationNotFound(f"organization {name!r} is not registered")
    return org


@dataclass(slots=True)
class StateKeys:
    """What to load: 18-character crm ids, casefolded usernames, notification ids."""

    crm_ids: set[str] = field(default_factory=set)
    username_keys: set[str] = field(default_factory=set)
    notification_ids: set[str] = field(default_factory=set)


def message_keys(
    notifications: tuple[Notification, ...], changes: tuple[UserChange | None, ...]
) -> StateKeys:
    """The keys of one message: every readable user id and notification id, and the
    usernames its readable User notifications map to."""
    keys = StateKeys()
    for n, change in zip(notifications, changes, strict=True):
        crm = try_canonical_id(n.record_id, USER)
        if crm is not None:
            keys.crm_ids.add(crm)
        key = username_key(change.agent.username) if change and change.agent else None
        if key is not None:
            keys.username_keys.add(key)
        nid = try_canonical_id(n.notification_id)
        if nid is not None:
            keys.notification_ids.add(nid)
    return keys


def load_state(session: Session, org_id: str, keys: StateKeys) -> StoredState:
    """The stored state for ``keys``: the agents, tombstones and parked changes of the
    users, the holders of the usernames, the notification ids already processed (one
    query per table)."""
    crm_ids, username_keys = keys.crm_ids, keys.username_keys
    users: dict[str, StoredUser] = {}
    owners: dict[str, str] = {}
    # Two index searches, not one OR scan of the organization (receiver._state_queries);
    # plain Core rows with the Agent column names (id, username, system_modstamp, data...).
    agents: dict[str, Any] = {}
    for row in agents_by_crm_or_username(session, org_id, crm_ids, username_keys):
        if row.username_key is not None and row.username_key in username_keys:
            owners[row.username_key] = row.crm_id
        if row.crm_id in crm_ids:
            agents[row.crm_id] = row
    tombs = {t.crm_id: t for t in tombstones_of(session, org_id, crm_ids)}
    processed = processed_of(session, org_id, keys.notification_ids)
    for crm in crm_ids:
        held, left = agents.get(crm), tombs.get(crm)
        if held is not None:
            users[crm] = StoredUser(
                crm,
                held.id,
                True,
                held.system_modstamp,
                held.username,
                data=held.data,
                has_tombstone=left is not None,
            )
        elif left is not None:
            users[crm] = StoredUser(
                crm, left.agent_id, False, left.system_modstamp, None, has_tombstone=True
            )
    parked = load_parked(session, org_id, crm_ids)
    return StoredState(users, owners, processed, organization_id=org_id, parked=parked)


def load_parked(
    session: Session, org_id: str, crm_ids: Iterable[str]
) -> dict[str, tuple[ParkedChange, ...]]:
    """The parked changes of these users, by crm id, oldest row first (one query)."""
    ids = sorted(set(crm_ids))
    if not ids:
        return {}
    found: dict[str, list[ParkedChange]] = {}
    for row in parked_rows_of(session, org_id, ids):
        found.setdefault(row.crm_id, []).append(row.to_change())
    return {crm: tuple(changes) for crm, changes in found.items()}
