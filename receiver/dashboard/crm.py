"""Company settings > CRM (``/organizations/{organization}/settings/crm``), CONTRACT
section 5: whether the webhook works, at a glance, and the product documentation's
troubleshooting steps.

At a glance: when the last Outbound Message arrived (a ``time`` element labelled
``Last message``, or ``never``), the last notification's action and reason, the last
rejection and why (a rejected message, or a request refused for a missing or wrong
token), the deployed trigger with the endpoint that deploy put in the Outbound Message,
flagged when it is not the current one (another base URL, or a token rotated since),
and the current endpoint (the token is never shown). A flash here is not a ``status``
element: the current deploy's result is the page's first (CONTRACT section 5). The Salesforce connection and the ``Refresh Webhook`` region come with the
connection work (they go where ``crm.html.j2`` marks their place; :func:`crm_values`
is where their values join the page's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.responses import Response

from receiver.dashboard.framework import OrgPage, org_route
from receiver.dashboard.log import agent_names
from receiver.models import Deployment, ProvisioningEvent, ProvisioningMessage
from receiver.organizations import webhook_path
from receiver.provisioning import SourceKind
from receiver.webhook_refusals import last_refusal

__all__ = ["ROUTES", "Rejection", "WebhookGlance", "crm_values", "webhook_glance"]

_M = ProvisioningMessage.__table__  # type: ignore[attr-defined]
_E = ProvisioningEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected webhook request: when (aware UTC), why, and ``kind`` (``message``: a
    rejected message in the provisioning log; ``token``: a request refused at the token
    check)."""

    at: datetime
    reason: str | None
    kind: str = "message"


@dataclass(frozen=True, slots=True)
class WebhookGlance:
    """The CRM page's facts; each ``None`` when there is none yet. ``endpoint`` is the
    current webhook URL without its token; ``deployed_endpoint`` the one the newest
    successful deploy put in the Outbound Message; ``endpoint_problem`` says why the two
    differ (another base URL, or a token rotated since)."""

    last_message: Any
    last_event: Any
    last_rejection: Rejection | None
    last_deploy: Deployment | None
    endpoint: str
    deployed_endpoint: str | None = None
    endpoint_problem: str | None = None
    #: The newest rejection of each kind, newest first (so a tokenless probe does not
    #: hide the 403 that says what to fix).
    rejections: tuple[Rejection, ...] = ()


def _endpoint_problem(
    deploy: Deployment | None, endpoint: str, token_sha256: str | None
) -> str | None:
    if deploy is None or deploy.endpoint is None:
        return None
    if deploy.endpoint != endpoint:
        return (
            "The deployed Outbound Message posts to another address than this service's "
            "current webhook URL (the base URL changed since)."
        )
    if token_sha256 is not None and deploy.token_sha256 not in (None, token_sha256):
        return (
            "The deployed Outbound Message carries an old token (the token was rotated "
            "since): this service refuses its messages (401)."
        )
    return None


def webhook_glance(
    session: Session,
    *,
    organization_id: str,
    base_url: str,
    token_sha256: str | None = None,
) -> WebhookGlance:
    """Five indexed reads (newest Outbound Message, its newest notification: a replay's or a
    reconcile's log entry is not a message from Salesforce; the newest rejected message, the last refused request, the newest successful deploy). The last rejection
    is the newer of a rejected message (413, 400, 403: in the provisioning log) and a
    refused request (401, missing or wrong token: ``receiver.webhook_refusals``)."""
    from_salesforce = _M.c.source == SourceKind.OUTBOUND_MESSAGE.value
    last_message = session.execute(
        sa.select(_M.c.id, _M.c.received_at, _M.c.outcome, _M.c.detail)
        .where(_M.c.organization_id == organization_id, from_salesforce)
        .order_by(_M.c.id.desc())
        .limit(1)
    ).first()
    last_event = session.execute(
        sa.select(
            _E.c.action, _E.c.reason, _E.c.crm_id, _E.c.id.label("event_id"), _M.c.received_at
        )
        .select_from(_E.join(_M, _M.c.id == _E.c.message_id))
        .where(_M.c.organization_id == organization_id, from_salesforce)
        .order_by(_M.c.id.desc(), _E.c.position.desc())
        .limit(1)
    ).first()
    last_rejection = session.execute(
        sa.select(_M.c.received_at, _M.c.detail)
        .where(_M.c.organization_id == organization_id, _M.c.outcome == "rejected")
        .order_by(_M.c.id.desc())
        .limit(1)
    ).first()
    last_deploy = session.exec(
        select(Deployment)
        .where(
            Deployment.organization_id == organization_id,
            Deployment.kind == "deploy",
            Deployment.outcome == "succeeded",
        )
        .order_by(col(Deployment.id).desc())
        .limit(1)
    ).first()
    refusal = last_refusal(session, organization_id)
    rejections = [
        r
        for r in (
            Rejection(last_rejection.received_at, last_rejection.detail)
            if last_rejection is not None
            else None,
            Rejection(refusal.last_at, refusal.reason, "token") if refusal is not None else None,
        )
        if r is not None
    ]
    rejections.sort(key=lambda r: r.at, reverse=True)
    newest = rejections[0] if rejections else None
    endpoint = f"{base_url}{webhook_path(organization_id)}"
    return WebhookGlance(
        last_message,
        last_event,
        newest,
        last_deploy,
        endpoint,
        deployed_endpoint=last_deploy.endpoint if last_deploy is not None else None,
        endpoint_problem=_endpoint_problem(last_deploy, endpoint, token_sha256),
        rejections=tuple(rejections),
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the default port of its scheme made explicit."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def other_origin(base_url: str, served_from: str) -> str | None:
    """``base_url``'s origin when it is not the one this page was served from (for
    example a demo run on another port re-registered the webhook), else ``None``.
    Behind a proxy both may differ on purpose: the page says so as a hint, not a fault."""
    if _origin(base_url) == _origin(served_from):
        return None
    scheme, host, port = _origin(base_url)
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def crm_values(session: Session, page: OrgPage) -> dict[str, Any]:
    """Everything the CRM template shows. The Salesforce connection's and Refresh
    Webhook's values are added here by their module."""
    from receiver.dashboard.salesforce import salesforce_values

    org = page.organization
    glance = webhook_glance(
        session, organization_id=org.id, base_url=org.base_url, token_sha256=org.token_hash
    )
    last = glance.last_event
    return {
        "glance": glance,
        # the last notification's user by name, as the Provisioning log names it
        "last_name": agent_names(session, organization_id=org.id, rows=[last]).get(last.crm_id)
        if last is not None and last.crm_id
        else None,
        "other_origin": other_origin(org.base_url, str(page.request.base_url)),
        **salesforce_values(session, page),
    }


async def crm_page(page: OrgPage) -> Response:
    """The CRM page (its CSP lets the Connect form's redirect reach Salesforce)."""
    from receiver.dashboard.salesforce import with_form_action

    values = await page.read(lambda s: crm_values(s, page))
    return with_form_action(page.render("crm.html.j2", values, nav="crm"), page.context.settings)


ROUTES = [org_route("/settings/crm", crm_page)]
