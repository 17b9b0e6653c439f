"""Per-user locking of one Outbound Message's transaction on PostgreSQL (issue 11 item 5).

Before, every message of an organization took the organization row ``FOR UPDATE``, so
messages of one organization queued one behind the other for the whole transaction (with
4 workers: lock-wait p99 about 1 s). Now the webhook's transaction
(:func:`run_message_locked`):

1. reads the organization row ``FOR SHARE`` (messages do not block each other; an
   admin's change of the row, a reconcile's ``FOR UPDATE`` or a deletion still waits for
   them, and they for it) and, in the same statement, the username keys the message's
   users hold now (without a lock);
2. opens a savepoint and takes transaction-level advisory locks
   (``pg_advisory_xact_lock``) on 64-bit hashes of everything the message may write or
   decide on: its users' crm ids, the username keys it claims, the username keys its users
   hold, its notification ids. ONE statement, over the distinct keys sorted by PostgreSQL
   itself (:data:`LOCK_STATEMENT`), so every waiting transaction waits in increasing key order and
   no two can wait for each other: no deadlock;
3. loads the state (after the locks: it sees every commit of a transaction that held one
   of them), decides and writes.

Keys found only later in the same transaction (a user renamed between the unlocked read
and the locks; the users of parked changes woken by a released username, their usernames)
are taken with :func:`ensure_locked`, which never waits while the transaction already
holds advisory locks: it tries them (``pg_try_advisory_xact_lock``); if one is held by
another transaction, it raises :class:`LocksBusy`, the savepoint is rolled back (which
releases every advisory lock taken after it: PostgreSQL "Advisory Locks" and "SAVEPOINT")
and the message starts again at step 2 with ALL the keys of the failed attempt in its one
blocking statement. After :data:`MAX_RESTARTS` restarts the late keys are waited for
(a deadlock is then possible; PostgreSQL breaks it with SQLSTATE 40P01, which
``receiver.db`` raises as :class:`~sf_metadata.errors.TransactionConflict` and the webhook
retries).

Every row such a transaction inserts, updates or deletes is named by a locked key: agents
and tombstones and parked changes by their user's crm id, the unique (organization,
username_key) index entries by the username keys claimed and released, processed
notification ids by their notification id; log rows are new serial rows. So two messages
never wait for each other's row locks either.

Outside :func:`run_message_locked` (reconcile, replay: they hold the organization row
``FOR UPDATE``, so no message holds advisory locks of that organization meanwhile),
:func:`ensure_locked` waits for the keys as before.

A hash collision only makes two unrelated messages wait for each other. SQLite needs none
of this: its write transactions begin ``BEGIN IMMEDIATE`` and run one at a time.
Advisory locks: https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS

Errors: :class:`LocksBusy` (internal: caught by :func:`run_message_locked`),
:class:`~sf_metadata.errors.OrganizationNotFound`, and whatever the session raises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import bindparam, func, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlmodel import Session, col, select

from receiver._provisioning_state import StateKeys, load_state, lock_organization
from receiver._state_queries import unique_lookups
from receiver.models import Agent, Organization
from sf_metadata.decision import StoredState
from sf_metadata.errors import OrganizationNotFound
from sf_metadata.mapping import username_key

__all__ = [
    "MAX_RESTARTS",
    "LOCK_STATEMENT",
    "LocksBusy",
    "ensure_locked",
    "lock_and_load",
    "lock_key_values",
    "lock_keys",
    "run_message_locked",
]

T = TypeVar("T")

#: Blocking: every distinct key, in PostgreSQL's own ascending bigint order (the sort
#: feeds the aggregate, so the locks are taken in that order whatever the array's order).
LOCK_STATEMENT = text(
    "SELECT count(pg_advisory_xact_lock(s.k)) FROM "
    "(SELECT DISTINCT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS s"
).bindparams(bindparam("keys", type_=ARRAY(BIGINT)))

#: Never waits: the keys it could not take (held by another transaction).
_TRY_LOCK = text(
    "SELECT s.k FROM (SELECT DISTINCT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS s "
    "WHERE NOT pg_try_advisory_xact_lock(s.k)"
).bindparams(bindparam("keys", type_=ARRAY(BIGINT)))

#: How many times a message starts again (from its savepoint) with more keys before it
#: waits for late keys while holding others.
MAX_RESTARTS = 8

#: ``Session.info`` key of the transaction's :class:`_Held` advisory locks.
_HELD = "agent_provision_advisory_locks"


class LocksBusy(Exception):  # noqa: N818 - a signal, not an error a caller sees
    """A late key is held by another transaction: start again with ``keys`` (every key
    the attempt wanted) in one blocking statement."""

    def __init__(self, keys: frozenset[int]) -> None:
        super().__init__(f"{len(keys)} advisory lock key(s) to take at once")
        self.keys = keys


@dataclass(slots=True)
class _Held:
    """The advisory locks this (sub)transaction holds; ``restartable``: inside
    :func:`run_message_locked` (late keys are tried, never waited for)."""

    keys: set[int] = field(default_factory=set)
    restartable: bool = False


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


def lock_keys(session: Session, keys: Iterable[int]) -> None:
    """Take the transaction-level advisory locks ``keys`` in one statement, in ascending
    order, waiting for each; they are held until the transaction ends. PostgreSQL only."""
    wanted = sorted(set(keys))
    if wanted:
        session.execute(LOCK_STATEMENT, {"keys": wanted})
        held = session.info.get(_HELD)
        if held is not None:
            held.keys.update(wanted)


def ensure_locked(session: Session, keys: Iterable[int]) -> None:
    """Hold the advisory locks ``keys`` too (PostgreSQL only). Inside
    :func:`run_message_locked`, keys not held yet are only tried: raises
    :class:`LocksBusy` if another transaction holds one. Elsewhere it waits for them
    (:func:`lock_keys`)."""
    held = session.info.get(_HELD)
    if held is None or not held.restartable:
        lock_keys(session, keys)
        return
    new = sorted(set(keys) - held.keys)
    if not new:
        return
    missed = session.execute(_TRY_LOCK, {"keys": new}).scalars().all()
    if missed:
        raise LocksBusy(frozenset(held.keys | set(new)))
    held.keys.update(new)


#: The organization row ``FOR SHARE`` and the username keys the agents of ``crm_ids``
#: hold now (read without a lock): one statement, one round trip, one text whatever the
#: number of ids.
#: The agents are probed by crm id one at a time (``receiver._state_queries``): as
#: ``crm_id = ANY(array)`` a table without statistics was scanned for the organization.
_HELD_BY = unique_lookups(
    (col(Agent.username_key),),
    col(Agent.organization_id),
    col(Agent.crm_id),
    "crm_ids",
    postgresql=True,
).subquery("held_by")
_HELD_NOW = (
    select(func.array_agg(_HELD_BY.c.username_key))
    .where(_HELD_BY.c.username_key.is_not(None))
    .scalar_subquery()
)
_ORGANIZATION_FOR_SHARE = (
    select(Organization, _HELD_NOW)
    .where(col(Organization.id) == bindparam("org_id"))
    .with_for_update(read=True, of=Organization)
    .execution_options(populate_existing=True)
)


def _organization_for_share(
    session: Session, name: str, crm_ids: set[str]
) -> tuple[Organization, set[str]]:
    """The organization row ``FOR SHARE`` and, in the same statement (no extra round
    trip), the username keys the agents of ``crm_ids`` hold now (read without a lock)."""
    row = session.execute(
        _ORGANIZATION_FOR_SHARE, {"org_id": name, "crm_ids": sorted(crm_ids)}
    ).one_or_none()
    if row is None:
        raise OrganizationNotFound(f"organization {name!r} is not registered")
    org, keys = row
    return org, set(keys or ())


def _load_locked(
    session: Session, org_id: str, keys: StateKeys, locked_usernames: set[str]
) -> StoredState:
    """The state of ``keys``, once the usernames its users hold are locked too: a user
    renamed since the unlocked read has its new username locked
    (:func:`ensure_locked`) and the state is read again."""
    while True:
        state = load_state(session, org_id, keys)
        moved = {
            key
            for user in state.users.values()
            if (key := username_key(user.username)) is not None and key not in locked_usernames
        }
        if not moved:
            return state
        locked_usernames |= moved
        ensure_locked(session, lock_key_values(org_id, username_keys=moved))


def run_message_locked(
    session: Session,
    organization: Organization | str,
    keys: StateKeys,
    work: Callable[[Organization, StoredState], T],
) -> T:
    """Lock what one message needs, load its stored state and run ``work(org, state)``
    (decide and write) in the caller's transaction, as the module docstring says:
    PostgreSQL per-user advisory locks inside a savepoint, started again with more keys
    when a late key is busy; SQLite (and any other store) the organization row as before
    (``receiver.provisioning.lock_organization``), then the state.

    ``work`` may run more than once on PostgreSQL (each earlier run rolled back to the
    savepoint): it must only write through the session. Raises
    :class:`~sf_metadata.errors.OrganizationNotFound` and whatever the session or
    ``work`` raise."""
    if session.get_bind().dialect.name != "postgresql":
        org = lock_organization(session, organization)
        return work(org, load_state(session, org.id, keys))
    name = organization if isinstance(organization, str) else organization.id
    org, held_now = _organization_for_share(session, name, keys.crm_ids)
    usernames = keys.username_keys | held_now
    wanted = set(
        lock_key_values(
            org.id,
            crm_ids=keys.crm_ids,
            username_keys=usernames,
            notification_ids=keys.notification_ids,
        )
    )
    for attempt in range(MAX_RESTARTS + 1):
        session.info[_HELD] = _Held(restartable=attempt < MAX_RESTARTS)
        try:
            with session.begin_nested():
                lock_keys(session, wanted)
                return work(org, _load_locked(session, org.id, keys, set(usernames)))
        except LocksBusy as busy:
            wanted |= busy.keys
        finally:
            session.info.pop(_HELD, None)
    raise AssertionError("unreachable: the last attempt waits for its keys")  # pragma: no cover


def lock_and_load(
    session: Session, organization: Organization | str, keys: StateKeys
) -> tuple[Organization, StoredState]:
    """Lock what one message needs and load its stored state, in the caller's transaction,
    without a savepoint: the locks of :func:`run_message_locked`'s first attempt, and late
    keys waited for (so only for callers that take nothing else afterwards, such as a
    test holding a message's locks open). Raises as :func:`run_message_locked`."""
    if session.get_bind().dialect.name != "postgresql":
        org = lock_organization(session, organization)
        return org, load_state(session, org.id, keys)
    name = organization if isinstance(organization, str) else organization.id
    org, held_now = _organization_for_share(session, name, keys.crm_ids)
    usernames = keys.username_keys | held_now
    lock_keys(
        session,
        lock_key_values(
            org.id,
            crm_ids=keys.crm_ids,
            username_keys=usernames,
            notification_ids=keys.notification_ids,
        ),
    )
    return org, _load_locked(session, org.id, keys, usernames)
