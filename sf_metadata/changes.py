"""One user change, read once, whatever it came from: a User notification of an Outbound
Message or a User record that reconcile queried (pure, no I/O).

:func:`user_change` maps the fields (``sf_metadata.mapping.map_user``), reads the ordering
stamp (:func:`parse_stamp`) and ``IsActive``; :func:`read_user_changes` does it for every
notification of a message. Bad content never raises: it becomes :attr:`UserChange.error`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sf_metadata.errors import NotificationError
from sf_metadata.mapping import AgentRecord, map_user, parse_boolean
from sf_metadata.metadata_names import SOBJECT_TYPE
from sf_metadata.outbound import Notification

__all__ = ["UserChange", "as_utc", "parse_stamp", "read_user_changes", "user_change"]


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value (as SQLite returns it) is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_stamp(fields: Mapping[str, str | None]) -> datetime | None:
    """The ordering stamp of a User change: ``SystemModstamp``, else ``LastModifiedDate``
    (``xsd:dateTime`` such as ``2026-11-20T10:00:00.000Z``; Salesforce always sends UTC in
    Outbound Messages and REST answers), as an aware UTC datetime; ``None`` when both are
    absent/empty (then arrival order decides).

    Raises :class:`NotificationError` naming the field when the chosen field is not a
    dateTime, or is one that has no UTC equivalent in years 1..9999.
    """
    for name in ("SystemModstamp", "LastModifiedDate"):
        text = fields.get(name)
        if text:
            try:
                return as_utc(datetime.fromisoformat(text.strip()))
            except (ValueError, OverflowError):
                # OverflowError: an offset pushes an edge value such as
                # 9999-12-31T23:59:59-05:00 out of datetime's range when converted to UTC.
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise NotificationError(f"{name} is {shown!r}, not an xsd:dateTime") from None
    return None


@dataclass(frozen=True, slots=True)
class UserChange:
    """The content of one User change, read once (mapping, stamp, ``IsActive``).

    Either ``error`` is ``None`` and ``agent`` is the mapped record (``agent.crm_id`` the
    canonical 18-character User id), ``stamp`` the ordering stamp (see
    :func:`parse_stamp`) and ``active`` the parsed ``IsActive``; or ``error`` is the reason
    it cannot be decided (then ``agent`` is ``None``).
    """

    agent: AgentRecord | None
    stamp: datetime | None
    active: bool
    error: str | None


def user_change(record_id: str, fields: Mapping[str, str | None]) -> UserChange:
    """Read one User change: ``record_id`` is the User ``Id`` as sent (15 or 18
    characters), ``fields`` its fields by API name (text as sent, ``None`` for null).
    Raises nothing: an undecidable change has ``error`` set (the reason names the field)."""
    try:
        agent = map_user(record_id, fields)
        stamp = parse_stamp(fields)
        active = parse_boolean("IsActive", fields.get("IsActive") or None)
    except NotificationError as exc:
        return UserChange(None, None, False, exc.message)
    return UserChange(agent, stamp, active, None)


def _read(n: Notification) -> UserChange | None:
    if n.sobject_type != SOBJECT_TYPE or n.record_id is None or not n.record_id.strip():
        return None
    return user_change(n.record_id, n.fields)


def read_user_changes(notifications: Sequence[Notification]) -> tuple[UserChange | None, ...]:
    """One :class:`UserChange` per notification, in document order (``None`` for a
    notification that is not about a User or has no ``sf:Id``). Pure; the e-mail syntax
    check of the username runs here once per notification, so the store can compute this
    before it takes its write lock and pass it to both its state load and
    ``sf_metadata.decision.plan_message``. Raises nothing for bad content."""
    return tuple(_read(n) for n in notifications)
