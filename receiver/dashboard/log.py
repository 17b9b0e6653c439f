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
from receiver.dashboard.logview import (
    ACTIONS,
    SOURCE_LABELS,
    LogRow,
    iter_rows,
    log_page,
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


def _before(page: OrgPage) -> int | None:
    return row_id(page.request.query_params.get("before", ""))


async def log_page_view(page: OrgPage) -> Response:
    """The table."""
    flt = parse_filter(page.request.query_params)
    before = _before(page)
    org_id = page.organization.id

    def work(
        session: Session,
    ) -> tuple[list[LogRow], int | None, set[int], dict[str, str], PendingCounts | None]:
        rows, next_before = log_page(session, organization_id=org_id, flt=flt, before_id=before)
        pending = pending_counts(session, organization_id=org_id, flt=flt)
        return (
            rows,
            next_before,
            replayable_events(session, organization_id=org_id, rows=rows),
            agent_names(session, organization_id=org_id, rows=rows),
            pending,
        )

    rows, next_before, replayable, names, pending = await page.read(work)
    return page.render(
        "log.html.j2",
        {
            "rows": rows,
            "flt": flt,
            "actions": ACTIONS,
            "sources": SOURCE_LABELS,
            "replay_fields": FILTER_FIELDS,
            "next_before": next_before,
            "first_page": before is None,
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
    """The filtered log, newest first, at most 100,000 rows."""
    flt = parse_filter(page.request.query_params)
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
