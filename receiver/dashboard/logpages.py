"""The Provisioning log page's paged reads (``receiver.dashboard.logview`` holds the
filters and the row): the messages of a view newest first with their notifications,
``ROWS_PER_PAGE`` rows a page, keyset-paged by message id and, inside a message larger than a
page (a reconcile run, a replayed batch), by notification position (:data:`PageStart`).

A filter on action or Salesforce user walks the event indexes
(``ix_provisioning_event_action`` / ``ix_provisioning_event_crm_id``, by message id
descending) and keeps the organization's messages; otherwise the walk is over
``ix_provisioning_message_organization_id_id`` (``..._outcome`` for an outcome filter,
``..._source`` for a source filter alone, migration 0018). A message that matches shows
only its matching notifications; one without notifications (ignored, empty, rejected) is
one row. Only the organization's own messages are ever read, whatever an address names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.dashboard.logview import ROWS_PER_PAGE, LogFilter, LogRow
from receiver.models import ProvisioningEvent, ProvisioningMessage
from receiver.provisioning_log import message_conditions

__all__ = ["PageStart", "iter_rows", "log_page", "newer_start"]

_M = ProvisioningMessage.__table__  # type: ignore[attr-defined]
_E = ProvisioningEvent.__table__  # type: ignore[attr-defined]


def _event_conditions(flt: LogFilter) -> list[Any]:
    """The ``provisioning_event`` conditions of the view ``flt`` (its Action and
    Salesforce user filters; none without them)."""
    out: list[Any] = []
    if flt.action is not None:
        out.append(_E.c.action == flt.action)
    if flt.crm_id is not None:
        out.append(_E.c.crm_id == flt.crm_id)
    return out


def _message_ids(
    session: Session,
    organization_id: str,
    flt: LogFilter,
    before_id: int | None,
    limit: int,
    *,
    after_id: int | None = None,
) -> list[tuple[int, int]]:
    """(message id, notification count) of up to ``limit`` matching messages, newest
    first; with ``after_id``, those newer than it, oldest first (the walk to the page
    before)."""
    if events := _event_conditions(flt):
        stmt = (
            sa.select(_E.c.message_id, _M.c.notification_count)
            .select_from(_E.join(_M, _M.c.id == _E.c.message_id))
            .where(_M.c.organization_id == organization_id, *events)
            .distinct()
        )
        if before_id is not None:
            stmt = stmt.where(_E.c.message_id < before_id)
        if after_id is not None:
            stmt = stmt.where(_E.c.message_id > after_id)
        order = _E.c.message_id.desc() if after_id is None else _E.c.message_id.asc()
    else:
        stmt = sa.select(_M.c.id, _M.c.notification_count).where(
            _M.c.organization_id == organization_id
        )
        if before_id is not None:
            stmt = stmt.where(_M.c.id < before_id)
        if after_id is not None:
            stmt = stmt.where(_M.c.id > after_id)
        order = _M.c.id.desc() if after_id is None else _M.c.id.asc()
    stmt = stmt.where(*message_conditions(flt)).order_by(order).limit(limit)
    return [(int(r[0]), int(r[1])) for r in session.execute(stmt)]


def _rows(
    session: Session,
    organization_id: str,
    ids: list[int],
    flt: LogFilter,
    *,
    from_position: int | None = None,
    limit: int | None = None,
) -> list[LogRow]:
    """The rows of the organization's messages among ``ids``, in page order (another
    organization's are left out); ``from_position`` and ``limit`` (for one message: a page
    inside it) start at that notification and stop after that many."""
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
            ).where(_M.c.id.in_(ids), _M.c.organization_id == organization_id)
        )
    }
    ids = [i for i in ids if i in messages]
    if not ids:
        return []
    stmt = sa.select(
        _E.c.id,
        _E.c.message_id,
        _E.c.position,
        _E.c.notification_id,
        _E.c.crm_id,
        _E.c.action,
        _E.c.reason,
    ).where(_E.c.message_id.in_(ids), *_event_conditions(flt))
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


def _matches(session: Session, organization_id: str, flt: LogFilter, message_id: int) -> bool:
    """Is ``message_id`` one of the organization's messages in the view ``flt``? (A page
    address that starts inside a message names it: another organization's, or one the
    filters leave out, starts nothing.)"""
    found = _message_ids(session, organization_id, flt, message_id + 1, 1)
    return [mid for mid, _ in found] == [message_id]


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
    if (
        start is not None
        and start[1] is not None
        and _matches(session, organization_id, flt, start[0])
    ):
        page = _rows(
            session, organization_id, [start[0]], flt, from_position=start[1], limit=rows + 1
        )
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
    page += _rows(session, organization_id, chosen, flt)
    rest = candidates[len(chosen) :]
    room = rows - len(page)
    if not rest:
        return page, None
    if room <= 0:
        last = chosen[-1] if chosen else before
        return page, ((last, None) if last is not None else None)
    cut = rest[0][0]  # fills the page with the first rows of the next message
    part = _rows(session, organization_id, [cut], flt, limit=room + 1)
    if len(part) > room:
        return page + part[:room], (cut, part[room].position)
    return page + part, ((cut, None) if len(rest) > 1 else None)


def _events(flt: LogFilter, message_id: int, below: int | None) -> Any:
    """The WHERE of a message's events in the view ``flt`` (before position ``below``)."""
    conditions = [_E.c.message_id == message_id, *_event_conditions(flt)]
    if below is not None:
        conditions.append(_E.c.position < below)
    return sa.and_(*conditions)


def _shown(session: Session, flt: LogFilter, ids: list[int]) -> dict[int, int]:
    """How many of each message's notifications the view shows (absent: none)."""
    if not ids:
        return {}
    stmt = sa.select(_E.c.message_id, sa.func.count()).where(
        _E.c.message_id.in_(ids), *_event_conditions(flt)
    )
    return {int(m): int(n) for m, n in session.execute(stmt.group_by(_E.c.message_id))}


def _nth_back(session: Session, flt: LogFilter, message_id: int, below: int | None, n: int) -> int:
    """The position of the ``n``-th shown notification of the message counting back from
    position ``below`` (from its last one, for ``None``)."""
    stmt = (
        sa.select(_E.c.position)
        .where(_events(flt, message_id, below))
        .order_by(_E.c.position.desc())
        .offset(n - 1)
        .limit(1)
    )
    return int(session.execute(stmt).scalar_one())


def newer_start(
    session: Session,
    *,
    organization_id: str,
    flt: LogFilter,
    first: LogRow,
    rows: int = ROWS_PER_PAGE,
) -> PageStart | None:
    """Where the page of the ``rows`` rows before ``first`` (the first row of a page)
    starts, or ``None`` when those rows reach the newest one (that page is the first).
    The ``Newer`` link: walks back through ``first``'s message, then the newer messages of
    the view, oldest first (a few indexed counts; a message without notifications starts
    as ``(its id + 1, None)``, the messages older than the next id)."""
    need = rows
    newer = _message_ids(session, organization_id, flt, None, rows + 1, after_id=first.message_id)
    if first.position is not None:
        count = sa.select(sa.func.count()).where(_events(flt, first.message_id, first.position))
        here = int(session.execute(count).scalar_one())
        if here > need or (here == need and newer):
            return first.message_id, _nth_back(session, flt, first.message_id, first.position, need)
        if here == need:
            return None  # those rows start at the newest: the first page
        need -= here
    complete = len(newer) <= rows  # every newer message is in ``newer``
    shown = _shown(session, flt, [m for m, _ in newer])
    for index, (message_id, _count) in enumerate(newer):
        top = complete and index == len(newer) - 1  # the newest message of the view
        n = shown.get(message_id, 0) or 1  # without notifications: one row, as on the page
        if n > need or (n == need and not top):
            if message_id not in shown:
                return message_id + 1, None
            return message_id, _nth_back(session, flt, message_id, None, need)
        if n == need:
            return None
        need -= n
    return None


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
