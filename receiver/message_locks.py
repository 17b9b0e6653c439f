"""Per-user locking of one Outbound Message's transaction on PostgreSQL (issue 11 item 5).

Before, every message of an organization took the organization row ``FOR UPDATE``, so
messages of one organization queued one behind the other for the whole transaction (with
4 workers: lock-wait p99 about 1 s). Now the webhook's transaction:

1. reads the organization row ``FOR SHARE`` (messages do not block each other; an
   admin's change of the row, a reconcile's ``FOR UPDATE`` or a deletion still waits for
   them, and they for it);
2. takes transaction-level advisory locks (``pg_advisory_xact_lock``) on 64-bit hashes of
   everything the message may write or decide on: its users' crm ids, the username keys
   it claims, the username keys its users hold now (read without a lock in the statement
   of step 1), and its notification ids; sorted, in ONE statement, so two messages never wait for each
   other in opposite orders. Two messages sharing a user, a username or a notification id
   serialize; the others run side by side;
3. loads the state (after the locks: it sees every commit of a transaction that held one
   of them). If a user's username changed between the unlocked read and the locks, that
   username is locked too and the state is loaded again.

A hash collision only makes two unrelated messages wait for each other. SQLite needs none
of this: its write transactions begin ``BEGIN IMMEDIATE`` and run one at a time.
Advisory locks: https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import bindparam, func, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlmodel import Session, col, select

from receiver._provisioning_state import StateKeys, load_state, lock_organization
from receiver.models import Agent, Organization
from sf_metadata.decision import StoredState
from sf_metadata.errors import OrganizationNotFound
from sf_metadata.mapping import username_key

__all__ = ["lock_and_load", "lock_keys", "lock_key_values"]

_LOCK = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS t(k)"
).bindparams(bindparam("keys", type_=ARRAY(BIGINT)))


def _hash(org_id: str, kind: str, value: str) -> int:
    digest = hashlib.blake2b(f"{org_id}\0{kind}\0{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_key_values(
    org_id: str,
    *,
    crm_ids: Iterable[str] = (),
    username_keys: Iterable[str] = (),
    notification_ids: Iterable[str] = (),
) -> list[int]:
    """The sorted, distinct signed 64-bit advisory lock keys of these names in ``org_id``
    (blake2b of organization, kind and value)."""
    keys = {_hash(org_id, "user", c) for c in crm_ids}
    keys |= {_hash(org_id, "username", u) for u in username_keys}
    keys |= {_hash(org_id, "notification", n) for n in notification_ids}
    return sorted(keys)


def lock_keys(session: Session, keys: list[int]) -> None:
    """Take the transaction-level advisory locks ``keys`` (sorted, as
    :func:`lock_key_values` returns them) in one statement, in that order; they are held
    until the transaction ends. PostgreSQL only."""
    if keys:
        session.execute(_LOCK, {"keys": keys})


def _organization_for_share(
    session: Session, name: str, crm_ids: set[str]
) -> tuple[Organization, set[str]]:
    """The organization row ``FOR SHARE`` and, in the same statement (no extra round
    trip), the username keys the agents of ``crm_ids`` hold now (read without a lock)."""
    held = (
        select(func.array_agg(col(Agent.username_key)))
        .where(
            col(Agent.organization_id) == name,
            col(Agent.crm_id).in_(sorted(crm_ids)),
            col(Agent.username_key).is_not(None),
        )
        .scalar_subquery()
    )
    row = session.exec(
        select(Organization, held)
        .where(Organization.id == name)
        .with_for_update(read=True, of=Organization)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        raise OrganizationNotFound(f"organization {name!r} is not registered")
    org, keys = row
    return org, set(keys or ())


def lock_and_load(
    session: Session, organization: Organization | str, keys: StateKeys
) -> tuple[Organization, StoredState]:
    """Lock what one message needs and load its stored state, in the caller's transaction:
    PostgreSQL as the module docstring says; SQLite (and any other store) the organization
    row as before (``receiver.provisioning.lock_organization``), then the state.

    Raises :class:`~sf_metadata.errors.OrganizationNotFound` and whatever the session
    raises."""
    if session.get_bind().dialect.name != "postgresql":
        org = lock_organization(session, organization)
        return org, load_state(session, org.id, keys)
    name = organization if isinstance(organization, str) else organization.id
    org, held = _organization_for_share(session, name, keys.crm_ids)
    locked_usernames = keys.username_keys | held
    lock_keys(
        session,
        lock_key_values(
            org.id,
            crm_ids=keys.crm_ids,
            username_keys=locked_usernames,
            notification_ids=keys.notification_ids,
        ),
    )
    while True:
        state = load_state(session, org.id, keys)
        moved = {
            key
            for user in state.users.values()
            if user.username is not None
            and (key := username_key(user.username)) is not None
            and key not in locked_usernames
        }
        if not moved:
            return org, state
        # a user of the message was renamed between the unlocked read and the locks
        locked_usernames |= moved
        lock_keys(session, lock_key_values(org.id, username_keys=moved))
