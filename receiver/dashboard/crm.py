"""Company settings > CRM (``/organizations/{organization}/settings/crm``), CONTRACT
section 5: whether the webhook works, at a glance, and the product documentation's
troubleshooting steps.

At a glance: when the last Outbound Message arrived (a ``time`` element labelled
``Last message``, or ``never``), the last notification's action and reason, the last
rejected message and why, and the deployed trigger with its endpoint (the token is never
shown). The Salesforce connection and the ``Refresh Webhook`` region come with the
connection work (they go where ``crm.html.j2`` marks their place; :func:`crm_values`
is where their values join the page's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.responses import Response

from receiver.dashboard.framework import OrgPage, org_route
from receiver.models import Deployment, ProvisioningEvent, ProvisioningMessage
from receiver.organizations import webhook_path

__all__ = ["ROUTES", "WebhookGlance", "crm_values", "webhook_glance"]

_M = ProvisioningMessage.__table__  # type: ignore[attr-defined]
_E = ProvisioningEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class WebhookGlance:
    """The CRM page's facts; each ``None`` when there is none yet."""

    last_message: Any
    last_event: Any
    last_rejection: Any
    last_deploy: Deployment | None
    endpoint: str


def webhook_glance(session: Session, *, organization_id: str, base_url: str) -> WebhookGlance:
    """Four indexed reads (newest message, its newest notification, the newest rejected
    message, the newest successful deploy)."""
    last_message = session.execute(
        sa.select(_M.c.id, _M.c.received_at, _M.c.outcome, _M.c.detail)
        .where(_M.c.organization_id == organization_id)
        .order_by(_M.c.id.desc())
        .limit(1)
    ).first()
    last_event = session.execute(
        sa.select(_E.c.action, _E.c.reason, _E.c.crm_id, _M.c.received_at)
        .select_from(_E.join(_M, _M.c.id == _E.c.message_id))
        .where(_M.c.organization_id == organization_id)
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
    endpoint = f"{base_url}{webhook_path(organization_id)}?token=…"
    return WebhookGlance(last_message, last_event, last_rejection, last_deploy, endpoint)


def crm_values(session: Session, page: OrgPage) -> dict[str, Any]:
    """Everything the CRM template shows. The Salesforce connection's and Refresh
    Webhook's values are added here by their module."""
    from receiver.dashboard.salesforce import salesforce_values

    org = page.organization
    return {
        "glance": webhook_glance(session, organization_id=org.id, base_url=org.base_url),
        **salesforce_values(session, page),
    }


async def crm_page(page: OrgPage) -> Response:
    """The CRM page (its CSP lets the Connect form's redirect reach Salesforce)."""
    from receiver.dashboard.salesforce import with_form_action

    values = await page.read(lambda s: crm_values(s, page))
    return with_form_action(page.render("crm.html.j2", values, nav="crm"), page.context.settings)


ROUTES = [org_route("/settings/crm", crm_page)]
