"""The Reconcile page (``/organizations/{organization}/reconcile``), CONTRACT section 5:
buttons ``Plan`` (a dry run) and ``Reconcile`` (plan and apply), both started as a
background reconcile job with the stored connection (one per organization across
workers: a second start is refused); the running job's progress in users (the page
reloads itself every 2 seconds while it runs, no JavaScript); the last plan's counts, each
labelled with its CONTRACT section 6 key; for a held plan ``Approve deletions`` and
``Reject``; every row of a plan at ``/reconcile/plans/{id}`` and as CSV at
``/reconcile/plans/{id}.csv``. The same functions as ``agent-provision reconcile``
(``receiver.reconcile.run`` / ``receiver.reconcile.jobs``)."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from receiver.dashboard.framework import (
    FLASH_MESSAGES,
    FLASH_PROBLEMS,
    OrgPage,
    csv_cell,
    org_route,
    redirect,
    vouched,
)
from receiver.dashboard.sync_user import sync_problem
from receiver.jobs import JobKind, latest_jobs
from receiver.reconcile.plans import StoredPlan, get_plan, latest_plan, plan_rows_json
from receiver.reconcile.run import apply_plan, reject_plan
from sf_metadata.errors import AgentProvisionError, JobBusy, PlanNotFound, ReconcileHeld
from sf_metadata.reconcile import COUNT_KEYS

__all__ = ["ROUTES"]

#: Rows shown on a plan's page; the CSV has them all.
ROWS_SHOWN = 500

FLASH_MESSAGES.update(
    {
        "reconcile-planning": "Planning started: nothing is written, the plan appears below.",
        "reconcile-started": "Reconcile started: the plan is applied unless the deletion guard holds it.",
        "reconcile-busy": "A reconcile of this organization is already running: wait for it to end.",
        "reconcile-approved": "The held plan was applied.",
        "reconcile-rejected": "The plan was rejected: nothing was written.",
        "reconcile-gone": "That plan was already applied or rejected.",
        "reconcile-held-again": "The plan is held again: deciding it again now deprovisions more agents than it showed. Read it again.",
        "reconcile-disabled": "Agent Auto Provision is disabled for this organization: enable it before applying a plan.",
        "reconcile-no-connection": "This organization has no Salesforce connection: connect it on the CRM page first.",
    }
)
FLASH_PROBLEMS.update(
    {
        "reconcile-busy",
        "reconcile-gone",
        "reconcile-held-again",
        "reconcile-disabled",
        "reconcile-no-connection",
    }
)


def _values(session: Session, organization_id: str) -> dict[str, Any]:
    from receiver.salesforce_connection import connection_info

    plan = latest_plan(session, organization_id)
    # the organization's last reconcile: a Sync now is a job of kind reconcile-users
    jobs = latest_jobs(session, organization_id, JobKind.RECONCILE, limit=1)
    job = jobs[0] if jobs else None
    return {
        "plan": plan,
        "plan_counts": _counts(plan),
        "job": job,
        "connected": connection_info(session, organization_id) is not None,
        "count_keys": COUNT_KEYS,
    }


def _counts(plan: StoredPlan | None) -> list[tuple[str, int]]:
    if plan is None:
        return []
    counts = plan.record.applied_counts or plan.record.counts
    return [(k, int(counts.get(k, 0))) for k in COUNT_KEYS]


def _reader_factory(page: OrgPage) -> Any:
    from receiver.reconcile.jobs import stored_reader_factory

    return stored_reader_factory(page.context.engine, page.context.settings)


async def reconcile_page(page: OrgPage) -> Response:
    """GET: the page. POST ``do``: ``plan``, ``reconcile``, ``approve``, ``reject``."""
    org_id = page.organization.id
    if page.form is not None:
        action = str(page.form.get("do", ""))
        plan_id = str(page.form.get("plan_id", ""))
        outcome = await _act(page, action, plan_id)
        return redirect(page.url("/reconcile", flash=outcome), vouch=page.request)
    sync_job = vouched(page.request).get("sync_job")

    def work(session: Session) -> dict[str, Any]:
        values = _values(session, org_id)
        if sync_job:  # a failed Sync user: why (its job is not this page's Last run)
            values["flash_why"] = sync_problem(session, org_id, sync_job)
        return values

    values = await page.read(work)
    return page.render("reconcile.html.j2", values, nav="reconcile")


async def _act(page: OrgPage, action: str, plan_id: str) -> str:
    from receiver.reconcile.jobs import start_in_background

    engine = page.context.engine
    org_id = page.organization.id
    if action in ("plan", "reconcile"):
        connected = await page.read(lambda s: _values(s, org_id)["connected"])
        if not connected:
            return "reconcile-no-connection"
        try:
            await run_in_threadpool(
                start_in_background,
                engine,
                org_id,
                _reader_factory(page),
                dry_run=action == "plan",
                actor=page.actor,
            )
        except JobBusy:
            return "reconcile-busy"
        return "reconcile-planning" if action == "plan" else "reconcile-started"
    if action in ("approve", "reject") and not _plausible_plan_id(plan_id):
        return "reconcile-gone"
    try:
        if action == "approve":
            result = await run_in_threadpool(
                lambda: apply_plan(
                    engine, org_id, plan_id, approve_deletions=True, actor=page.actor
                )
            )
            return "reconcile-approved" if result.status == "applied" else "reconcile-held-again"
        if action == "reject":
            await run_in_threadpool(lambda: reject_plan(engine, org_id, plan_id, actor=page.actor))
            return "reconcile-rejected"
    except PlanNotFound:
        return "reconcile-gone"
    except ReconcileHeld:
        return "reconcile-held-again"
    except AgentProvisionError:
        return "reconcile-disabled"
    return ""


def _plausible_plan_id(plan_id: str) -> bool:
    """Could ``plan_id`` name a plan? (A NUL or a control character never does, and
    PostgreSQL refuses a NUL in a parameter.)"""
    return 0 < len(plan_id) <= 64 and plan_id.isprintable()


async def _plan_or_404(page: OrgPage) -> StoredPlan | Response:
    """The organization's plan of the path's ``plan_id``, or the 404 page that says there
    is none."""
    plan_id = str(page.request.path_params["plan_id"])
    org_id = page.organization.id
    try:
        if not _plausible_plan_id(plan_id):
            raise PlanNotFound(f"no reconcile plan {plan_id[:40]!r}")
        return await page.read(lambda s: get_plan(s, org_id, plan_id))
    except PlanNotFound:
        return page.error(
            404,
            "No such plan",
            f"This organization has no reconcile plan {plan_id[:40]!r}.",
            hint="The Reconcile page shows the last plan, with a link to every row.",
        )


async def plan_page(page: OrgPage) -> Response:
    """One plan: status, counts (each a link to its rows: ``?action=`` a count key), a
    held plan's Approve and Reject, and its first rows (the CSV has every row)."""
    plan = await _plan_or_404(page)
    if isinstance(plan, Response):
        return plan
    action = page.request.query_params.get("action")
    shown = action if action in COUNT_KEYS else None  # anything else: every row
    rows = [r for r in plan_rows_json(plan) if shown is None or r["action"] == shown]
    return page.render(
        "reconcile_plan.html.j2",
        {
            "plan": plan,
            "plan_counts": _counts(plan),
            "rows": rows[:ROWS_SHOWN],
            "total_rows": len(rows),
            "shown_action": shown,
        },
        nav="reconcile",
    )


async def plan_csv(page: OrgPage) -> Response:
    """Every row of a plan as CSV: crmId, action, reason, username."""
    plan = await _plan_or_404(page)
    if isinstance(plan, Response):
        return plan
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["crmId", "action", "reason", "username"])
    writer.writeheader()
    for row in plan_rows_json(plan):
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="reconcile-{page.organization.id}-{plan.id}.csv"',
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
        },
    )


ROUTES = [
    org_route("/reconcile", reconcile_page, methods=["GET", "POST"]),
    org_route("/reconcile/plans/{plan_id:str}.csv", plan_csv),
    org_route("/reconcile/plans/{plan_id:str}", plan_page),
]
