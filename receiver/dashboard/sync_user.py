"""``Sync now``: one Salesforce user read and applied on demand (the on-demand provisioning of
Entra ID and authentik's "Sync User", ``dashboard-anchors.md`` (a) 8).

- ``POST /organizations/{organization}/users/{crmId}/sync``: the agent page's button;
- ``POST /organizations/{organization}/reconcile/sync-user`` (field ``user``): the Reconcile
  page's form, for a user who has no page yet (never provisioned, nothing logged).

Both run a reconcile of that one user (``receiver.reconcile.jobs.run_in_foreground`` with
``user_ids``, as ``agent-provision reconcile run ORGANIZATION --user ID``): one read of the
User with the stored Salesforce connection, the same decision and apply path as the webhook
and every reconcile, a stored plan of kind ``chosen`` (it moves no watermark and never
stands for the organization's last reconcile), and the decision in the provisioning log
and the user's timeline when it changed something. It holds the organization's reconcile
lease: while another reconcile runs it reads nothing and says so.

The answer is a redirect to the user's page with ``synced=<plan id>`` (vouched for by the
flash cookie: only the POST's own redirect shows it), where :func:`synced_row` finds what
was decided; a user Salesforce did not return goes back with a message, nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from receiver.dashboard.framework import (
    FLASH_MESSAGES,
    FLASH_PROBLEMS,
    OrgPage,
    org_route,
    redirect,
)
from receiver.db import transaction
from receiver.reconcile.plans import CHOSEN, get_plan
from sf_metadata.errors import (
    AgentProvisionError,
    AuthenticationError,
    CredentialsError,
    InvalidSalesforceId,
    JobBusy,
    PlanNotFound,
    SalesforceError,
)
from sf_metadata.ids import USER, typed_id

__all__ = ["ROUTES", "SyncedRow", "reader_factory", "sync_problem", "synced_row"]

FLASH_MESSAGES.update(
    {
        "sync-not-found": "Salesforce returned no user with that id in this organization's "
        "Salesforce org. Check the id (it is on the user's Salesforce "
        "page) and the connected org on the CRM page. No agent was changed.",
        "sync-bad-id": "That is not a Salesforce User id (005…, 15 or 18 characters).",
        "sync-refused": "Salesforce refused the stored connection: nothing was read or "
        "written. Connect to Salesforce again on the CRM page.",
        "sync-unreadable": "Salesforce could not be read: nothing was written.",
        "sync-failed": "The user could not be synced: nothing was written.",
    }
)
FLASH_PROBLEMS.update(
    {"sync-not-found", "sync-bad-id", "sync-refused", "sync-unreadable", "sync-failed"}
)


@dataclass(frozen=True, slots=True)
class SyncedRow:
    """What a ``Sync now`` decided for the user: the plan's ``action`` (a CONTRACT section
    6 count key) and ``reason``, the plan's ``status`` (``applied``, or ``planned`` while
    the feature is disabled) and ``plan_id``."""

    action: str
    reason: str
    status: str
    plan_id: str


def reader_factory(page: OrgPage) -> Any:
    """``(organization) -> UserReader`` with the stored connection (a seam for tests)."""
    from receiver.reconcile.jobs import stored_reader_factory

    return stored_reader_factory(page.context.engine, page.context.settings)


#: A person waits for the page: two attempts a second apart, 20 s a request at most, where
#: a reconcile's reader makes six, backing off to 32 s (newcomer finding: the page held
#: the browser 62 s when Salesforce could not be reached).
INTERACTIVE_READ = {"max_attempts": 2, "base_delay": 1.0, "timeout": 20.0}


def _interactive(factory: Any) -> Any:
    """``factory`` whose readers give up as :data:`INTERACTIVE_READ` says."""

    def make(organization: str) -> Any:
        reader = factory(organization)
        for name, value in INTERACTIVE_READ.items():
            if hasattr(reader, name):
                setattr(reader, name, value)
        return reader

    return make


def synced_row(
    session: Session, organization_id: str, plan_id: str, crm_id: str
) -> SyncedRow | None:
    """The row of ``crm_id`` in the organization's plan ``plan_id`` of chosen users, or
    ``None`` (no such plan, another kind of plan, or no row for that user)."""
    if not 0 < len(plan_id) <= 64 or not plan_id.isprintable():
        return None
    try:
        plan = get_plan(session, organization_id, plan_id)
    except PlanNotFound:
        return None
    if plan.record.kind != CHOSEN:
        return None
    for row in plan.rows:
        if row.crm_id == crm_id:
            return SyncedRow(row.action, row.reason, plan.status, plan.id)
    return None


def sync_problem(session: Session, organization_id: str, job_id: str) -> str | None:
    """The first problem recorded by the organization's failed ``Sync now`` job
    ``job_id`` (decimal text, from the vouched ``sync_job`` parameter), or ``None`` (no
    such job of that organization and kind, or none recorded): why nothing was read."""
    from receiver.jobs import JobKind, get_job

    if not (job_id.isascii() and job_id.isdigit()) or len(job_id) > 18:
        return None
    job = get_job(session, int(job_id))
    if job is None or job.organization != organization_id:
        return None
    if job.kind != JobKind.RECONCILE_USERS or not job.problems:
        return None
    # the page's sentence says "nothing was written" already (attack finding: twice)
    text = job.problems[0].rstrip(" .").replace(": nothing was written, ", ": ")
    for tail in (": nothing was written", "; nothing was written", ", nothing was written"):
        text = text.removesuffix(tail)
    return text + "."


def _sync(page: OrgPage, crm_id: str) -> tuple[str, str | None, int | None]:
    """Run the one-user reconcile; ``(flash or "", plan id or None, the failed job's id
    for :func:`sync_problem` or None)``."""
    from receiver.reconcile.jobs import run_in_foreground
    from receiver.salesforce_connection import connection_info

    engine = page.context.engine
    org_id = page.organization.id
    with transaction(engine, read_only=True) as session:
        if connection_info(session, org_id) is None:
            return "reconcile-no-connection", None, None
    job: list[int] = []
    try:
        result = run_in_foreground(
            engine,
            org_id,
            _interactive(reader_factory(page)),
            full=False,
            user_ids=[crm_id],
            actor=page.actor,
            on_job=job.append,
        )
    except JobBusy:
        return "reconcile-busy", None, None
    except (AuthenticationError, CredentialsError):
        return "sync-refused", None, None
    except SalesforceError:
        return "sync-unreadable", None, job[0] if job else None
    except AgentProvisionError:
        return "sync-failed", None, job[0] if job else None
    with transaction(engine, read_only=True) as session:
        if synced_row(session, org_id, result.plan_id, crm_id) is None:
            return "sync-not-found", None, None
    return "", result.plan_id, None


async def _answer(page: OrgPage, crm_id: str, back: str) -> Response:
    flash, plan_id, job_id = await run_in_threadpool(_sync, page, crm_id)
    if plan_id is None:
        return redirect(page.url(back, flash=flash, sync_job=job_id), vouch=page.request)
    return redirect(page.url(f"/users/{crm_id}", synced=plan_id), vouch=page.request)


async def sync_agent(page: OrgPage) -> Response:
    """POST from the agent page."""
    crm_id = page.user_id()
    if isinstance(crm_id, Response):
        return crm_id
    return await _answer(page, crm_id, f"/users/{crm_id}")


async def sync_any_user(page: OrgPage) -> Response:
    """POST from the Reconcile page's form (field ``user``)."""
    raw = str(page.form.get("user", "")).strip() if page.form is not None else ""
    try:
        crm_id = typed_id(raw, USER)
    except InvalidSalesforceId:
        return redirect(page.url("/reconcile", flash="sync-bad-id"), vouch=page.request)
    return await _answer(page, crm_id, "/reconcile")


ROUTES = [
    org_route("/users/{crm_id}/sync", sync_agent, methods=["POST"]),
    org_route("/reconcile/sync-user", sync_any_user, methods=["POST"]),
]
