"""The Provisioning log page (``/organizations/{organization}/provisioning-log``): a row
per notification with its action and reason, filters (action, outcome, Salesforce user,
date), failed ones highlighted with a ``Replay`` button, and the filtered log as CSV
(``.../provisioning-log.csv``) or JSON (``.../provisioning-log.json``).

Replay of a failed notification belongs to the decision core (``receiver/replay.py``, not
in this build yet): until it is wired here, failed rows say that replay is not available,
and no button pretends.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from sqlmodel import Session
from starlette.responses import Response, StreamingResponse

from receiver.dashboard.framework import OrgPage, org_route
from receiver.dashboard.logview import ACTIONS, LogRow, iter_rows, log_page, parse_filter

__all__ = ["ROUTES", "replay_available"]

_CSV_COLUMNS = (
    "messageId",
    "receivedAt",
    "outcome",
    "detail",
    "position",
    "notificationId",
    "crmId",
    "action",
    "reason",
)


def replay_available() -> bool:
    """True once a replay route is wired to ``receiver.replay`` (not yet)."""
    return False


def _before(page: OrgPage) -> int | None:
    raw = page.request.query_params.get("before", "")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


async def log_page_view(page: OrgPage) -> Response:
    """The table."""
    flt = parse_filter(page.request.query_params)
    before = _before(page)
    org_id = page.organization.id

    def work(session: Session) -> tuple[list[LogRow], int | None]:
        return log_page(session, organization_id=org_id, flt=flt, before_id=before)

    rows, next_before = await page.read(work)
    return page.render(
        "log.html.j2",
        {
            "rows": rows,
            "flt": flt,
            "actions": ACTIONS,
            "next_before": next_before,
            "first_page": before is None,
            "replay": replay_available(),
        },
        nav="log",
    )


def _csv_lines(rows: Iterator[LogRow]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        data = row.to_json()
        writer.writerow([_cell(data[c]) for c in _CSV_COLUMNS])
        yield buffer.getvalue()


def _cell(value: object) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula gets a leading quote
    (OWASP "CSV Injection")."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _json_chunks(rows: Iterator[LogRow]) -> Iterator[str]:
    yield "["
    first = True
    for row in rows:
        yield ("" if first else ",") + "\n" + json.dumps(row.to_json(), ensure_ascii=False)
        first = False
    yield "\n]\n"


async def download(page: OrgPage) -> Response:
    """The filtered log, newest first, at most 100,000 rows."""
    flt = parse_filter(page.request.query_params)
    kind = "csv" if page.request.url.path.endswith(".csv") else "json"
    rows = iter_rows(page.context.engine, organization_id=page.organization.id, flt=flt)
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
