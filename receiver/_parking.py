"""Private helpers of ``receiver.provisioning``: the parked changes (username collisions
waiting for a release) and the failed notifications kept for replay
(``receiver/provisioning_tables.py``). They read and write what they are told."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from receiver._contained_write import write_contained
from receiver._provisioning_state import StateKeys, load_state
from receiver._provisioning_write import write_effects
from receiver.db import insert_rows
from receiver.message_locks import ensure_locked, lock_key_values
from receiver.models import ProvisioningEvent
from receiver.provisioning_tables import FailedNotification, ParkedChangeRow
from sf_metadata.decision import Action, Decision, StoredState, decide_parked
from sf_metadata.effects import ParkedChange, UpsertAgent, WriteTombstone
from sf_metadata.mapping import username_key
from sf_metadata.outbound import Notification

__all__ = [
    "load_waiting",
    "released_keys",
    "store_failed",
    "wake_parked",
    "write_contained_and_parking",
    "write_parking",
]


def load_waiting(session: Session, org_id: str, keys: Iterable[str]) -> list[ParkedChange]:
    """The parked changes that claim one of these casefolded usernames (one query)."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    return [
        row.to_change()
        for row in session.exec(
            select(ParkedChangeRow)
            .where(
                ParkedChangeRow.organization_id == org_id,
                col(ParkedChangeRow.username_key).in_(wanted),
            )
            .order_by(col(ParkedChangeRow.id))
        ).all()
    ]


def released_keys(decisions: Iterable[Decision]) -> set[str]:
    """The casefolded usernames the decisions' effects release (renames, deprovisions)."""
    keys: set[str] = set()
    for d in decisions:
        effect = d.effect
        if isinstance(effect, UpsertAgent | WriteTombstone) and effect.released_key:
            keys.add(effect.released_key)
    return keys


def write_parking(
    session: Session, org_id: str, decisions: Sequence[Decision], now: datetime
) -> None:
    """Forget the parked changes the decisions ``unpark``, then park their ``park``
    changes (one statement each)."""
    gone = sorted({pid for d in decisions for pid in d.unpark})
    if gone:
        session.exec(
            delete(ParkedChangeRow).where(
                col(ParkedChangeRow.organization_id) == org_id, col(ParkedChangeRow.id).in_(gone)
            )
        )
    rows = [
        {
            "organization_id": org_id,
            "crm_id": d.crm_id,
            "username_key": d.park.username_key,
            "holder_crm_id": d.park.holder_crm_id,
            "system_modstamp": d.park.system_modstamp,
            "data": d.park.record.to_json(),
            "notification_id": d.park.notification_id,
            "parked_at": now,
        }
        for d in decisions
        if d.park is not None and d.crm_id is not None
    ]
    if rows:
        insert_rows(session, ParkedChangeRow, rows)


def store_failed(
    session: Session,
    org_id: str,
    message_id: int,
    decisions: Sequence[Decision],
    notifications: Sequence[Notification],
    now: datetime,
) -> None:
    """Keep what replay needs of every FAILED decision about a notification of
    ``notifications`` (by its index): the notification's id, object type, record id and
    fields, never a SessionId. Two queries, only when something failed."""
    failed = {
        d.index: notifications[d.index]
        for d in decisions
        if d.action is Action.FAILED and 0 <= d.index < len(notifications)
    }
    if not failed:
        return
    events = session.exec(
        select(ProvisioningEvent.id, ProvisioningEvent.position).where(
            ProvisioningEvent.message_id == message_id,
            col(ProvisioningEvent.position).in_(sorted(failed)),
        )
    ).all()
    insert_rows(
        session,
        FailedNotification,
        [
            {
                "event_id": event_id,
                "organization_id": org_id,
                # Cut values stay invalid: no Salesforce id is longer than 18, no object
                # type we take is longer than 4 ("User"), so a replay fails them again.
                "notification_id": _cut(failed[position].notification_id, 64),
                "sobject_type": _cut(failed[position].sobject_type, 80),
                "record_id": _cut(failed[position].record_id, 64),
                "fields": dict(failed[position].fields),
                "stored_at": now,
            }
            for event_id, position in events
        ],
    )


def _cut(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None


#: Bound on rounds of parked changes woken by releases in one transaction (each applied
#: one removes a parked row, so chains end; this only guards against a store gone wrong).
MAX_PARKED_ROUNDS = 100


def write_contained_and_parking(
    session: Session, org_id: str, decisions: tuple[Decision, ...], now: datetime
) -> tuple[Decision, ...]:
    """Write the effects, then the parked changes, of ``decisions``; returns them, with
    any change the store refused replaced by a ``failed`` one (``receiver._contained_write``:
    one refused change is logged as failed, not a 500 for the whole message)."""
    decisions = write_contained(session, org_id, decisions, now, write_effects)
    write_parking(session, org_id, decisions, now)
    return decisions


def wake_parked(
    session: Session, org_id: str, released: set[str], now: datetime, *, first_index: int
) -> tuple[Decision, ...]:
    """Decide again the parked changes waiting for a released username (only when
    something was released: two queries a round, plus the state of the woken users)."""
    woken: list[Decision] = []
    for _ in range(MAX_PARKED_ROUNDS):
        waiting = load_waiting(session, org_id, released) if released else []
        if not waiting:
            break
        keys = StateKeys(
            crm_ids={p.crm_id for p in waiting},
            username_keys={p.username_key for p in waiting},
        )
        state = _lock_and_load_woken(session, org_id, keys)
        # Still parked once locked (a concurrent change of that user may have superseded
        # it), and only changes whose username is free now; the others wait.
        current = {p.id for changes in state.parked.values() for p in changes}
        free = [
            p
            for p in waiting
            if p.id in current and state.username_owners.get(p.username_key) in (None, p.crm_id)
        ]
        if not free:
            break
        decided = decide_parked(free, state, first_index=first_index + len(woken))
        decisions = write_contained_and_parking(session, org_id, tuple(decided), now)
        woken += decisions
        released = released_keys(decisions)
    return tuple(woken)


def _lock_and_load_woken(session: Session, org_id: str, keys: StateKeys) -> StoredState:
    """The state of woken parked changes' users. On PostgreSQL, where messages of one
    organization run side by side (``receiver.message_locks``), first the advisory locks
    of those users, the usernames they claim and the usernames they hold, as a message of
    theirs would take them, with ``ensure_locked``: inside a message's transaction it never
    waits while holding other locks (a busy key starts the message again with all its
    keys taken at once, so no deadlock)."""
    if session.get_bind().dialect.name != "postgresql":
        return load_state(session, org_id, keys)
    ensure_locked(
        session,
        lock_key_values(org_id, crm_ids=keys.crm_ids, username_keys=keys.username_keys),
    )
    state = load_state(session, org_id, keys)
    held = {
        key
        for user in state.users.values()
        if (key := username_key(user.username)) is not None and key not in keys.username_keys
    }
    if not held:
        return state
    ensure_locked(session, lock_key_values(org_id, username_keys=held))
    return load_state(session, org_id, keys)
