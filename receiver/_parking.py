"""Private helpers of ``receiver.provisioning``: the parked changes (username collisions
waiting for a release) and the failed notifications kept for replay
(``receiver/provisioning_tables.py``). They read and write what they are told."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from receiver.db import insert_rows
from receiver.models import ProvisioningEvent
from receiver.provisioning_tables import FailedNotification, ParkedChangeRow
from sf_metadata.decision import Action, Decision
from sf_metadata.effects import ParkedChange, UpsertAgent, WriteTombstone
from sf_metadata.mapping import AgentRecord
from sf_metadata.outbound import Notification

__all__ = [
    "load_parked",
    "load_waiting",
    "released_keys",
    "store_failed",
    "write_parking",
]


def _parked(row: ParkedChangeRow) -> ParkedChange:
    if row.id is None:  # pragma: no cover - rows read from the store always have an id
        raise ValueError("a parked change without an id")
    return ParkedChange(
        id=row.id,
        crm_id=row.crm_id,
        username_key=row.username_key,
        record=AgentRecord.from_json(row.data),
        system_modstamp=row.system_modstamp,
        notification_id=row.notification_id,
    )


def load_parked(
    session: Session, org_id: str, crm_ids: Iterable[str]
) -> dict[str, tuple[ParkedChange, ...]]:
    """The parked changes of these users, by crm id, oldest row first (one query)."""
    ids = sorted(set(crm_ids))
    if not ids:
        return {}
    found: dict[str, list[ParkedChange]] = {}
    for row in session.exec(
        select(ParkedChangeRow)
        .where(ParkedChangeRow.organization_id == org_id, col(ParkedChangeRow.crm_id).in_(ids))
        .order_by(col(ParkedChangeRow.id))
    ).all():
        found.setdefault(row.crm_id, []).append(_parked(row))
    return {crm: tuple(changes) for crm, changes in found.items()}


def load_waiting(session: Session, org_id: str, keys: Iterable[str]) -> list[ParkedChange]:
    """The parked changes that claim one of these casefolded usernames (one query)."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    return [
        _parked(row)
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
