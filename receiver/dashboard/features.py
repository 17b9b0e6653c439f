"""The Features page (``/organizations/{organization}/features``) and the switch's POST
(``/organizations/{organization}/features/agent-auto-provision``).

The switch form carries the state the operator saw (``expected``); pressing it asks for the
other state through :func:`receiver.feature_switch.set_feature` (the function behind
``org enable|disable``), which changes nothing when the organization is no longer in the
state seen (a form sent twice). The page shows the switch's audit log.
"""

from __future__ import annotations

from sqlmodel import Session
from starlette.responses import Response

from receiver.dashboard.framework import (
    FLASH_MESSAGES,
    FLASH_PROBLEMS,
    OrgPage,
    client_address,
    org_route,
    redirect,
)
from receiver.feature_switch import FeatureAudit, list_audit, set_feature
from receiver.salesforce_connection import connection_info

__all__ = ["ROUTES"]

FLASH_MESSAGES["enabled-with-problems"] = (
    "Agent Auto Provision is now Enabled, but a step that follows enabling failed: "
    "see the CRM and Reconcile pages."
)
FLASH_PROBLEMS.add("enabled-with-problems")
FLASH_MESSAGES["enabled-installing"] = (
    "Agent Auto Provision is now Enabled. Nothing was deployed to this Salesforce org "
    "before, so Refresh Webhook now deploys the User Outbound Message and its flow there "
    "with the stored connection (follow it on the CRM page), and a first reconcile brings "
    "in the users who already exist (the Reconcile page)."
)
FLASH_MESSAGES["enabled-unconnected"] = (
    "Agent Auto Provision is now Enabled. This organization has no Salesforce connection, so "
    "nothing brings in what changed in Salesforce while it was off, nor the users who existed "
    "before: connect on the CRM page, then reconcile."
)


async def features_page(page: OrgPage) -> Response:
    """The switch and its audit log."""
    org_id = page.organization.id

    def work(session: Session) -> list[FeatureAudit]:
        return list_audit(session, organization_id=org_id)

    audit = await page.read(work)
    return page.render("features.html.j2", {"audit": audit}, nav="features")


async def flip(page: OrgPage) -> Response:
    """POST: flip the switch, then back to the page it was pressed on."""
    assert page.form is not None
    expected_raw = page.form.get("expected")
    return_to = "/features" if page.form.get("return_to") == "features" else "/users"
    if expected_raw not in ("enabled", "disabled"):
        return page.error(
            400,
            "Form not understood",
            "Nothing was changed: the switch's form lacks the state it was pressed in.",
            hint="Reload the page and press the switch again.",
        )
    expected = expected_raw == "enabled"
    context = page.context
    org_id = page.organization.id
    actor = page.actor
    address = client_address(page.request)
    now = page.now

    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(
        lambda: set_feature(
            context.engine,
            settings=context.settings,
            organization=org_id,
            enabled=not expected,
            actor=actor,
            client_address=address,
            now=now,
            expected=expected,
            background=True,
        )
    )
    if not result.changed:
        flash = "unchanged"
    elif result.after and any(not a.ok for a in result.actions):
        flash = "enabled-with-problems"
    elif result.after and any(
        a.name == "install-webhook" and a.message is not None for a in result.actions
    ):
        flash = "enabled-installing"  # the admin must know a deploy to their org started
    else:
        flash = "enabled" if result.after else "disabled"
    if flash == "enabled" and not await page.read(
        lambda session: connection_info(session, org_id) is not None
    ):
        flash = "enabled-unconnected"  # no first reconcile ran: say what is missing
    return redirect(page.url(return_to, flash=flash), vouch=page.request)


ROUTES = [
    org_route("/features", features_page),
    org_route("/features/agent-auto-provision", flip, methods=["POST"]),
]
