"""The Provisioning log page (``/organizations/{organization}/provisioning-log``): a row
per notification with its action and reason, filters (action, outcome, Salesforce user,
date), failed ones highlighted with a ``Replay`` button, and the filtered log as CSV
(``.../provisioning-log.csv``) or JSON (``.../provisioning-log.json``).

``Replay`` on a failed row and ``Replay N failed`` (with the Action filter on
``failed``) are :mod:`receiver.dashboard.log_replay`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Protocol

from sqlmodel import Session, col, select
from starlette.responses import Response, StreamingResponse

from receiver.dashboard.framework import OrgPage, csv_cell, org_route, vouched
from receiver.dashboard.log_replay import (
    FILTER_FIELDS,
    PendingCounts,
    batch_counts,
    pending_counts,
)
from receiver.dashboard.logpages import PageStart, iter_rows, log_page, newer_start
from receiver.dashboard.logview import (
    ACTIONS,
    SOURCE_LABELS,
    LogRow,
    parse_filter,
    row_id,
)
from receiver.models import Agent, Tombstone
from receiver.provisioning_tables import FailedNotification
from receiver.replay_batch import MAX_BATCH

__all__ = ["ROUTES", "NamedRow", "agent_names", "carried_name", "replayable_events", "row_id"]


_CSV_COLUMNS = (
    "messageId",
    "receivedAt",
    "source",
    "outcome",
    "detail",
    "position",
    "notificationId",
    "crmId",
    "name",
    "action",
    "reason",
)
#: Rows named per query in a download (:func:`_named`).
_NAMED_CHUNK = 500


def replayable_events(session: Session, *, organization_id: str, rows: list[LogRow]) -> set[int]:
    """The event ids among ``rows`` whose failed notification is kept for replay (one
    indexed query for the page)."""
    ids = [r.event_id for r in rows if r.event_id is not None and r.action == "failed"]
    if not ids:
        return set()
    found = session.exec(
        select(FailedNotification.event_id).where(
            FailedNotification.organization_id == organization_id,
            col(FailedNotification.event_id).in_(ids),
        )
    )
    return set(found)


class NamedRow(Protocol):
    """What :func:`agent_names` reads of a row: its Salesforce user and its log event
    (a :class:`LogRow`, or a query row with those two columns)."""

    @property
    def crm_id(self) -> str | None: ...

    @property
    def event_id(self) -> int | None: ...


def agent_names(
    session: Session, *, organization_id: str, rows: Sequence[NamedRow]
) -> dict[str, str]:
    """``{crmId: name}`` of the agents that exist now among ``rows``' Salesforce users (one
    indexed query for the page; the username stands in for an agent without a name); for
    a user with no agent, the ``Name`` its failed notification carried (kept for replay; a
    second query); for a deprovisioned user, the ``Name`` its tombstone kept (a third; none
    for a tombstone older than migration 0016: the page shows the id alone)."""
    ids = {r.crm_id for r in rows if r.crm_id is not None}
    if not ids:
        return {}
    found = session.exec(
        select(Agent.crm_id, Agent.username, Agent.data).where(
            Agent.organization_id == organization_id, col(Agent.crm_id).in_(ids)
        )
    )
    names: dict[str, str] = {}
    for crm_id, username, data in found:
        name = (data or {}).get("name") or username
        if name:
            names[crm_id] = str(name)
    # A deprovisioned user: the Name its tombstone kept (migration 0016).
    gone = ids - names.keys()
    if gone:
        kept_names = session.exec(
            select(Tombstone.crm_id, Tombstone.name).where(
                Tombstone.organization_id == organization_id,
                col(Tombstone.crm_id).in_(gone),
                col(Tombstone.name).is_not(None),
            )
        )
        for crm_id, name in kept_names:
            if name and name.strip():
                names[crm_id] = name.strip()
    # A user with no agent (its change failed): the Name its kept notification carried.
    users_of = {r.event_id: r.crm_id for r in rows if r.event_id is not None and r.crm_id}
    failed = [e for e, crm_id in users_of.items() if crm_id not in names]
    if failed:
        kept = session.exec(
            select(FailedNotification.event_id, FailedNotification.fields).where(
                FailedNotification.organization_id == organization_id,
                col(FailedNotification.event_id).in_(failed),
            )
        )
        for event_id, fields in kept:
            name = carried_name(fields)
            if name is not None:
                names.setdefault(users_of[event_id], name)
    return names


def carried_name(fields: Mapping[str, Any] | None) -> str | None:
    """The ``Name`` a kept failed notification's ``fields`` carried, stripped; ``None`` for
    none or an empty one."""
    name = (fields or {}).get("Name")
    return (name.strip() or None) if isinstance(name, str) else None


def _page_start(params: Mapping[str, str]) -> tuple[PageStart | None, bool]:
    """Where the page starts, from its address: ``at=<message id>.<position>`` (inside a
    message larger than a page) or ``before=<message id>``; ``None`` (the newest) for
    neither or an unreadable one; and whether one was given but none could be read (the
    page then says it shows the newest rows)."""
    at, before_text = str(params.get("at", "")), str(params.get("before", ""))
    message, _, position = at.partition(".")
    if (mid := row_id(message)) is not None and (pos := row_id(position)) is not None:
        return (mid, pos), False
    before = row_id(before_text)
    if before is not None:  # a page of its own (an unreadable at= beside it is moot)
        return (before, None), False
    return None, bool(at or before_text)


def _page_link(start: PageStart) -> dict[str, str]:
    """The query parameters of the page that starts at ``start``."""
    mid, position = start
    return {"before": str(mid)} if position is None else {"at": f"{mid}.{position}"}


async def log_page_view(page: OrgPage) -> Response:
    """The table."""
    flt = parse_filter(page.request.query_params)
    start, unreadable_start = _page_start(page.request.query_params)
    org_id = page.organization.id

    def work(
        session: Session,
    ) -> tuple[
        list[LogRow],
        PageStart | None,
        PageStart | None,
        set[int],
        dict[str, str],
        PendingCounts | None,
    ]:
        rows, next_start = log_page(session, organization_id=org_id, flt=flt, start=start)
        newer = (
            newer_start(session, organization_id=org_id, flt=flt, first=rows[0])
            if start is not None and rows
            else None
        )
        pending = pending_counts(session, organization_id=org_id, flt=flt)
        return (
            rows,
            next_start,
            newer,
            replayable_events(session, organization_id=org_id, rows=rows),
            agent_names(session, organization_id=org_id, rows=rows),
            pending,
        )

    rows, next_start, newer, replayable, names, pending = await page.read(work)
    return page.render(
        "log.html.j2",
        {
            "rows": rows,
            "flt": flt,
            "actions": ACTIONS,
            "sources": SOURCE_LABELS,
            "replay_fields": FILTER_FIELDS,
            "next_page": _page_link(next_start) if next_start is not None else None,
            # the page before this one: its start, or {} for the first page
            "newer_page": _page_link(newer) if newer is not None else {},
            "first_page": start is None,
            "unreadable_start": unreadable_start,
            "replayable": replayable,
            "names": names,
            "pending": pending,
            "max_batch": MAX_BATCH,
            "batch": batch_counts(vouched(page.request)),
            "failed_on_page": any(r.action == "failed" for r in rows),
        },
        nav="log",
    )


def _named(engine: Any, organization_id: str, rows: Iterator[LogRow]) -> Iterator[dict[str, Any]]:
    """Each row's JSON with ``name``: the Name the page shows for its Salesforce user
    (:func:`agent_names`, one short read per :data:`_NAMED_CHUNK` rows; ``None`` when
    none is known)."""
    from receiver.db import transaction

    while chunk := list(islice(rows, _NAMED_CHUNK)):
        with transaction(engine, read_only=True) as session:
            names = agent_names(session, organization_id=organization_id, rows=chunk)
        for row in chunk:
            data = row.to_json()
            data["name"] = names.get(row.crm_id) if row.crm_id is not None else None
            yield data


def _csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    yield buffer.getvalue()
    for data in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(data[c]) for c in _CSV_COLUMNS])
        yield buffer.getvalue()


_cell = csv_cell  # the log's name for it (tests/receiver/dashboard/test_log.py)


def _json_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield "["
    first = True
    for data in rows:
        yield ("" if first else ",") + "\n" + json.dumps(data, ensure_ascii=False)
        first = False
    yield "\n]\n"


async def download(page: OrgPage) -> Response:
    """The filtered log, newest first, at most 100,000 rows; a filter that cannot be read
    is a 400 (the page ignores it and says so; a download must not silently widen to the
    whole log)."""
    flt = parse_filter(page.request.query_params)
    if flt.problems:
        return page.error(
            400,
            "Filter not understood",
            "Nothing was downloaded: " + "; ".join(flt.problems) + ".",
            hint="Choose the filters on the Provisioning log page, then download that view.",
        )
    kind = "csv" if page.request.url.path.endswith(".csv") else "json"
    engine, org_id = page.context.engine, page.organization.id
    rows = _named(engine, org_id, iter_rows(engine, organization_id=org_id, flt=flt))
    name = f"provisioning-log-{page.organization.id}.{kind}"
    headers = {
        "content-disposition": f'attachment; filename="{name}"',
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
    }
    if kind == "csv":
        return StreamingResponse(
            _csv_lines(rows), media_type="text/csv; charset=utf-8", headers=headers
        )
    return StreamingResponse(_json_chunks(rows), media_type="application/json", headers=headers)


ROUTES = [
    org_route("/provisioning-log", log_page_view),
    org_route("/provisioning-log.csv", download),
    org_route("/provisioning-log.json", download),
]
