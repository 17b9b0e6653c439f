"""The Provisioning log page's reads: messages newest first with their notifications,
filtered by action, outcome, source (Outbound Message, Reconcile, Replay), Salesforce
user and date, 100 rows a page, paged by message id and, inside a message larger than a page
(a reconcile run, a replayed batch), by notification position (keyset: ``PageStart``).

A filter on action or Salesforce user walks the event indexes
(``ix_provisioning_event_action`` / ``ix_provisioning_event_crm_id``, by message id
descending) and keeps the organization's messages; otherwise the walk is over
``ix_provisioning_message_organization_id_id`` (or ``..._outcome`` for an outcome filter).
A message that matches shows only its matching notifications; one without notifications
(ignored, empty, rejected) is one row. A source filter alone walks
``ix_provisioning_message_organization_id_source`` (migration 0018); with another filter
it is a condition on the message row of that filter's walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.models import ProvisioningEvent, ProvisioningMessage
from receiver.outcomes import MessageOutcome
from sf_metadata.errors import InvalidSalesforceId
from sf_metadata.ids import USER, canonical_id

__all__ = [
    "ACTIONS",
    "OUTCOMES",
    "SOURCES",
    "SOURCE_LABELS",
    "LogFilter",
    "LogRow",
    "PageStart",
    "iter_rows",
    "log_page",
    "parse_filter",
    "row_id",
]

#: The notification actions of CONTRACT section 3.
ACTIONS = (
    "created",
    "updated",
    "deprovisioned",
    "restored",
    "duplicate",
    "stale",
    "ignored",
    "failed",
)
#: The message outcomes the Outcome filter offers (``receiver.outcomes``).
OUTCOMES = tuple(o.value for o in MessageOutcome)
#: About this many notification rows a page (whole messages).
ROWS_PER_PAGE = 100

#: ``provisioning_message.source`` -> what the page calls it.
SOURCE_LABELS = {
    "outbound-message": "Outbound Message",
    "reconcile": "Reconcile",
    "replay": "Replay",
}
#: The sources the Source filter offers (``receiver.provisioning.SourceKind`` values).
SOURCES = tuple(SOURCE_LABELS)

_M = ProvisioningMessage.__table__  # type: ignore[attr-defined]
_E = ProvisioningEvent.__table__  # type: ignore[attr-defined]


#: The largest row id of the store (PostgreSQL ``integer``); larger numbers are no id.
_MAX_ID = 2**31 - 1


def row_id(raw: str) -> int | None:
    """``raw`` as a row id: ASCII digits only (``str.isdigit`` also takes ``²`` and
    Arabic-Indic digits, which ``int`` then refuses or reads), at most :data:`_MAX_ID`;
    else ``None``."""
    if not raw or len(raw) > 10 or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= _MAX_ID else None


@dataclass(frozen=True, slots=True)
class LogFilter:
    """The page's filters; ``problems`` lists the ones that could not be read (ignored),
    ``notes`` what was read otherwise than typed (a From date after the To date: swapped)."""

    action: str | None = None
    outcome: str | None = None
    crm_id: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    problems: tuple[str, ...] = ()
    raw: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def query(self) -> dict[str, str]:
        """The filter as query parameters (for links and downloads)."""
        return {k: v for k, v in self.raw.items() if v}


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_filter(params: Any) -> LogFilter:
    """Read ``action``, ``outcome``, ``source`` (one of :data:`SOURCES`), ``user``
    (Salesforce User id), ``from`` and ``to``
    (``YYYY-MM-DD``, UTC, inclusive) from a query mapping. A value that cannot be read is
    left out and named in ``problems``. A From date after the To date is read as the range
    between them (the two swapped, also in ``raw`` so the form shows them so) and said in
    ``notes``: an admin who typed them the wrong way round sees the days meant, not an empty
    log."""
    problems: list[str] = []
    raw = {
        k: str(params.get(k, ""))[:100].strip()
        for k in ("action", "outcome", "source", "user", "from", "to")
    }
    action = raw["action"] or None
    if action is not None and action not in ACTIONS:
        problems.append("unknown action: choose one of the list")  # never echoed
        action = None
        raw["action"] = ""
    outcome = raw["outcome"] or None
    if outcome is not None and outcome not in OUTCOMES:
        problems.append("unknown outcome: choose one of the list")
        outcome = None
        raw["outcome"] = ""
    source = raw["source"] or None
    if source is not None and source not in SOURCES:
        problems.append("unknown source: choose one of the list")  # never echoed
        source = None
        raw["source"] = ""
    crm_id = None
    if raw["user"]:
        try:
            crm_id = canonical_id(raw["user"], USER)
        except InvalidSalesforceId:
            problems.append(
                "the Salesforce user id is not a User id (005…, 15 or 18 characters; find a "
                "user by name with Search on the Users page: the id is on their page)"
            )
    notes: list[str] = []
    first, last = _date(raw["from"]), _date(raw["to"])
    if first is not None and last is not None and first > last:
        notes.append(
            f"From {first.isoformat()} was after To {last.isoformat()}: the dates were swapped"
        )
        raw["from"], raw["to"] = raw["to"], raw["from"]
    since = until = None
    if raw["from"]:
        d = _date(raw["from"])
        if d is None:
            problems.append("the From date is not YYYY-MM-DD")
            raw["from"] = ""
        else:
            since = datetime.combine(d, time.min, tzinfo=UTC)
    if raw["to"]:
        d = _date(raw["to"])
        if d is None:
            problems.append("the To date is not YYYY-MM-DD")
            raw["to"] = ""
        elif d < date.max:
            until = datetime.combine(d, time.min, tzinfo=UTC) + timedelta(days=1)
    return LogFilter(
        action, outcome, crm_id, source, since, until, tuple(problems), raw, tuple(notes)
    )


@dataclass(frozen=True, slots=True)
class LogRow:
    """One table row: a notification of a message, or a message without notifications
    (``event_id`` is then ``None``)."""

    message_id: int
    received_at: datetime
    outcome: str
    detail: str | None
    action_id: str | None
    event_id: int | None
    position: int | None
    notification_id: str | None
    crm_id: str | None
    action: str | None
    reason: str | None
    source: str = "outbound-message"
    #: The reconcile plan id of a reconcile's row (``provisioning_message.source_ref``).
    plan_id: str | None = None

    @property
    def source_label(self) -> str:
        """Where the row's decision came from, as the page says it: an Outbound Message,
        a reconcile plan or a replay (``provisioning_message.source``)."""
        return SOURCE_LABELS.get(self.source, self.source)

    def to_json(self) -> dict[str, Any]:
        """The row for the JSON download."""
        return {
            "messageId": self.message_id,
            "receivedAt": self.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "outcome": self.outcome,
            "detail": self.detail,
            "position": self.position,
            "notificationId": self.notification_id,
            "crmId": self.crm_id,
            "action": self.action,
            "reason": self.reason,
        }


def _message_ids(
    session: Session, organization_id: str, flt: LogFilter, before_id: int | None, limit: int
) -> list[tuple[int, int]]:
    """(message id, notification count) of up to ``limit`` matching messages, newest
    first."""
    if flt.action is not None or flt.crm_id is not None:
        stmt = (
            sa.select(_E.c.message_id, _M.c.notification_count)
            .select_from(_E.join(_M, _M.c.id == _E.c.message_id))
            .where(_M.c.organization_id == organization_id)
            .distinct()
        )
        if flt.action is not None:
            stmt = stmt.where(_E.c.action == flt.action)
        if flt.crm_id is not None:
            stmt = stmt.where(_E.c.crm_id == flt.crm_id)
        if before_id is not None:
            stmt = stmt.where(_E.c.message_id < before_id)
        order = _E.c.message_id.desc()
    else:
        stmt = sa.select(_M.c.id, _M.c.notification_count).where(
            _M.c.organization_id == organization_id
        )
        if before_id is not None:
            stmt = stmt.where(_M.c.id < before_id)
        order = _M.c.id.desc()
    if flt.outcome is not None:
        stmt = stmt.where(_M.c.outcome == flt.outcome)
    if flt.source is not None:
        stmt = stmt.where(_M.c.source == flt.source)
    if flt.since is not None:
        stmt = stmt.where(_M.c.received_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(_M.c.received_at < flt.until)
    return [(int(r[0]), int(r[1])) for r in session.execute(stmt.order_by(order).limit(limit))]


def _rows(
    session: Session,
    ids: list[int],
    flt: LogFilter,
    *,
    from_position: int | None = None,
    limit: int | None = None,
) -> list[LogRow]:
    """The rows of messages ``ids`` in page order; ``from_position`` and ``limit`` (for one
    message: a page inside it) start at that notification and stop after that many."""
    if not ids:
        return []
    messages = {
        r.id: r
        for r in session.execute(
            sa.select(
                _M.c.id,
                _M.c.received_at,
                _M.c.outcome,
                _M.c.detail,
                _M.c.action_id,
                _M.c.source,
                _M.c.source_ref,
            ).where(_M.c.id.in_(ids))
        )
    }
    stmt = sa.select(
        _E.c.id,
        _E.c.message_id,
        _E.c.position,
        _E.c.notification_id,
        _E.c.crm_id,
        _E.c.action,
        _E.c.reason,
    ).where(_E.c.message_id.in_(ids))
    if flt.action is not None:
        stmt = stmt.where(_E.c.action == flt.action)
    if flt.crm_id is not None:
        stmt = stmt.where(_E.c.crm_id == flt.crm_id)
    if from_position is not None:
        stmt = stmt.where(_E.c.position >= from_position)
    stmt = stmt.order_by(_E.c.message_id, _E.c.position)
    events: dict[int, list[Any]] = {}
    for e in session.execute(stmt if limit is None else stmt.limit(limit)):
        events.setdefault(e.message_id, []).append(e)
    out: list[LogRow] = []
    for mid in ids:
        m = messages[mid]
        head = (mid, m.received_at, m.outcome, m.detail, m.action_id)
        plan = m.source_ref if m.source == "reconcile" else None
        evs = events.get(mid, [])
        if not evs and from_position is None:
            out.append(LogRow(*head, None, None, None, None, None, None, m.source, plan))
        for e in evs:
            out.append(
                LogRow(
                    *head,
                    e.id,
                    e.position,
                    e.notification_id,
                    e.crm_id,
                    e.action,
                    e.reason,
                    m.source,
                    plan,
                )
            )
    return out


#: Where a page starts: ``(message id, None)``, the messages older than that one; or
#: ``(message id, position)``, inside that message from that notification on (a message
#: with more notifications than a page: a reconcile run, a replayed batch).
PageStart = tuple[int, int | None]


def log_page(
    session: Session,
    *,
    organization_id: str,
    flt: LogFilter,
    start: PageStart | None = None,
    rows: int = ROWS_PER_PAGE,
) -> tuple[list[LogRow], PageStart | None]:
    """``(rows, next_start)``: ``rows`` rows from ``start`` (the newest message when
    ``None``; fewer at the end of the log): whole messages while they fit, then the first
    rows of the next one (a message of more notifications than a page, a reconcile run or a
    replayed batch, is cut into pages); and where the next (older) page starts, or
    ``None``."""
    page: list[LogRow] = []
    before = start[0] if start is not None else None
    if start is not None and start[1] is not None:
        page = _rows(session, [start[0]], flt, from_position=start[1], limit=rows + 1)
        if len(page) > rows:
            return page[:rows], (start[0], page[rows].position)
    budget = rows - len(page)
    candidates = _message_ids(session, organization_id, flt, before, budget + 1)
    chosen: list[int] = []
    total = 0
    for message_id, count in candidates:
        if total + max(count, 1) > budget:
            break
        chosen.append(message_id)
        total += max(count, 1)
    page += _rows(session, chosen, flt)
    rest = candidates[len(chosen) :]
    room = rows - len(page)
    if not rest:
        return page, None
    if room <= 0:
        last = chosen[-1] if chosen else before
        return page, ((last, None) if last is not None else None)
    cut = rest[0][0]  # fills the page with the first rows of the next message
    part = _rows(session, [cut], flt, limit=room + 1)
    if len(part) > room:
        return page + part[:room], (cut, part[room].position)
    return page + part, ((cut, None) if len(rest) > 1 else None)


def iter_rows(
    engine: Any, *, organization_id: str, flt: LogFilter, max_rows: int = 100_000
) -> Iterator[LogRow]:
    """Every matching row, newest first, at most ``max_rows``, read about 1,000 rows at a
    time (one short read transaction each)."""
    from receiver.db import transaction

    start: PageStart | None = None
    sent = 0
    while True:
        with transaction(engine, read_only=True) as session:
            rows, start = log_page(
                session, organization_id=organization_id, flt=flt, start=start, rows=1000
            )
        for row in rows:
            if sent >= max_rows:
                return
            sent += 1
            yield row
        if start is None:
            return
