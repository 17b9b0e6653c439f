"""The Provisioning log page (``/organizations/{organization}/provisioning-log``): a row
per notification with its action and reason, filters (action, outcome, Salesforce user,
date), failed ones highlighted with a ``Replay`` button, and the filtered log as CSV
(``.../provisioning-log.csv``) or JSON (``.../provisioning-log.json``).

``Replay`` (``POST .../provisioning-log/replay``, form field ``event_id``) decides a failed
notification again through :func:`receiver.replay.replay_notification`: the same decision
code and apply path as the webhook, so a stale change stays stale. The button is shown only
on failed rows whose notification was kept for replay (rows logged before replay existed
have nothing to replay). The result is shown after the redirect (Post/Redirect/Get).

With the Action filter on ``failed``, the page counts the view's failures not replayed yet
and offers ``Replay N failed`` (``POST .../provisioning-log/replay-failed``, the filter's
``user``, ``from``, ``to`` and ``outcome`` as form fields): the same
:func:`receiver.replay_batch.replay_failed` as ``agent-provision replay``, oldest first, at
most 500 a press; the redirect carries the counts (``replayed``, ``applied``, ``again``,
``left``: integers only) for the line that reports them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from receiver.dashboard.framework import (
    FLASH_MESSAGES,
    FLASH_PROBLEMS,
    OrgPage,
    csv_cell,
    org_route,
    redirect,
)
from receiver.dashboard.logview import (
    ACTIONS,
    LogFilter,
    LogRow,
    iter_rows,
    log_page,
    parse_filter,
)
from receiver.models import Agent
from receiver.provisioning_tables import FailedNotification
from receiver.replay import replay_notification
from receiver.replay_batch import MAX_BATCH, ReplayScope, replay_failed, replayable_failures
from sf_metadata.decision import Action
from sf_metadata.errors import JobBusy, ReplayNotFound

__all__ = ["ROUTES", "agent_names", "replayable_events"]

FLASH_MESSAGES.update(
    {
        "replayed": "Replayed: the notification was decided again; its new entry is at the "
        "top of the log.",
        "replay-failed-again": "Replayed, and it failed again: see the reason in the new entry "
        "at the top of the log.",
        "replay-unknown": "That notification cannot be replayed: it did not fail, belongs to "
        "no organization of yours, or was logged before replay was kept.",
        "replay-busy": "Another replay of this organization's failures is running (started "
        "from another page, browser or the command line): nothing was replayed twice. Look "
        "at the log again in a moment.",
    }
)
FLASH_PROBLEMS.update({"replay-failed-again", "replay-unknown", "replay-busy"})

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


def agent_names(session: Session, *, organization_id: str, rows: list[LogRow]) -> dict[str, str]:
    """``{crmId: name}`` of the agents that exist now among ``rows``' Salesforce users (one
    indexed query for the page; the username stands in for an agent without a name); for
    a user with no agent, the ``Name`` its failed notification carried (kept for replay; a
    second query). A deprovisioned user has no entry: the page shows its id alone."""
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
            name = (fields or {}).get("Name")
            if isinstance(name, str) and name.strip():
                names.setdefault(users_of[event_id], name.strip())
    return names


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


def _before(page: OrgPage) -> int | None:
    return row_id(page.request.query_params.get("before", ""))


def replay_scope(flt: LogFilter) -> ReplayScope:
    """The failures a bulk replay of the view ``flt`` takes (its action filter aside)."""
    return ReplayScope(crm_id=flt.crm_id, since=flt.since, until=flt.until, outcome=flt.outcome)


_BATCH_COUNTS = ("replayed", "applied", "again", "left")


def batch_counts(params: object) -> dict[str, int] | None:
    """The counts a bulk replay's redirect carries (each an ASCII integer), or ``None``."""
    get = getattr(params, "get", None)
    if get is None or get("replayed") is None:
        return None
    counts = {k: row_id(str(get(k, "") or "0")) for k in _BATCH_COUNTS}
    if any(v is None for v in counts.values()):
        return None
    return {k: int(v or 0) for k, v in counts.items()}


async def log_page_view(page: OrgPage) -> Response:
    """The table."""
    flt = parse_filter(page.request.query_params)
    before = _before(page)
    org_id = page.organization.id

    def work(
        session: Session,
    ) -> tuple[list[LogRow], int | None, set[int], dict[str, str], int | None]:
        rows, next_before = log_page(session, organization_id=org_id, flt=flt, before_id=before)
        pending = None
        if flt.action == "failed":
            scope = replay_scope(flt)
            pending = len(replayable_failures(session, organization_id=org_id, scope=scope))
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
            "next_before": next_before,
            "first_page": before is None,
            "replayable": replayable,
            "names": names,
            "pending_replays": pending,
            "max_batch": MAX_BATCH,
            "batch": batch_counts(page.request.query_params),
            "failed_on_page": any(r.action == "failed" for r in rows),
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
        writer.writerow([csv_cell(data[c]) for c in _CSV_COLUMNS])
        yield buffer.getvalue()


_cell = csv_cell  # the log's name for it (tests/receiver/dashboard/test_log.py)


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


async def replay(page: OrgPage) -> Response:
    """POST: replay the failed notification of form field ``event_id``, then show the log."""
    raw = str(page.form.get("event_id", "")) if page.form is not None else ""
    event_id = row_id(raw)
    if event_id is None:
        return redirect(page.url("/provisioning-log", flash="replay-unknown"))
    org_id = page.organization.id
    now = page.context.clock()
    hooks = page.context.hooks

    def work(session: Session) -> str:
        try:
            result = replay_notification(
                session, organization=org_id, event_id=event_id, now=now, hooks=hooks
            )
        except ReplayNotFound:
            return "replay-unknown"
        return "replay-failed-again" if result.decision.action is Action.FAILED else "replayed"

    flash = await page.write(work)
    return redirect(page.url("/provisioning-log", flash=flash))


async def replay_view(page: OrgPage) -> Response:
    """POST: replay the failures of the filter in the form (see the module docstring)."""
    form = page.form
    fields = {
        k: str(form.get(k, "")) if form is not None else ""
        for k in ("user", "from", "to", "outcome")
    }
    flt = parse_filter({**fields, "action": "failed"})
    back = {**flt.query()}
    if flt.problems:
        return redirect(page.url("/provisioning-log", **back))
    org_id = page.organization.id
    context = page.context
    now = context.clock()

    def work() -> tuple[int, int, int, int]:
        done = replay_failed(
            context.engine,
            organization=org_id,
            scope=replay_scope(flt),
            now=now,
            hooks=context.hooks,
        )
        again = done.actions.get(Action.FAILED.value, 0)
        applied = sum(
            n
            for a, n in done.actions.items()
            if a in ("created", "updated", "restored", "deprovisioned")
        )
        return done.replayed, applied, again, done.remaining

    try:
        replayed, applied, again, left = await run_in_threadpool(work)
    except JobBusy:
        return redirect(page.url("/provisioning-log", **back, flash="replay-busy"))
    return redirect(
        page.url(
            "/provisioning-log",
            **back,
            replayed=str(replayed),
            applied=str(applied),
            again=str(again),
            left=str(left),
        )
    )


ROUTES = [
    org_route("/provisioning-log", log_page_view),
    org_route("/provisioning-log/replay", replay, methods=["POST"]),
    org_route("/provisioning-log/replay-failed", replay_view, methods=["POST"]),
    org_route("/provisioning-log.csv", download),
    org_route("/provisioning-log.json", download),
]
