"""Edges of the dashboard in a real headless Chromium against a live ``serve``: a held
sign-in says which limit and when to retry; a stranger's wrong passwords from another
address do not hold the operator; on the CRM page the current deploy's result stays the
first ``status`` element even with a flash, and the deployed endpoint is shown; a wrong
token shows as the last rejection; on a phone-width screen (420 px) no page is wider than the
screen, a wide table scrolls in its own box. Screens at 1366x768 unless said (in
$AGENT_PROVISION_SCREENSHOT_DIR)."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import ORG_ID, PASSWORD, Live
from tests.browser.test_crm import CrmLive, _refresh_and_wait, crm_live
from tests.browser.test_crm import _sign_in as _crm_sign_in
from tests.factories import make_notification, make_outbound_message

__all__ = ["crm_live"]


def _shot(page: Any, name: str, shot: Any) -> None:
    shot(page, name)  # in $AGENT_PROVISION_SCREENSHOT_DIR (tests/browser/conftest.py)


def _try(page: Any, live: Live, password: str) -> None:
    page.goto(live.url + "/login")
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_held_sign_in_says_why_and_when(page: Any, live: Live, shot: Any) -> None:
    # The browser is at 127.0.0.1; other addresses are covered without a browser in
    # tests/receiver/dashboard/test_throttle.py.
    for _ in range(5):
        _try(page, live, "wrong password here")
        expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    _try(page, live, PASSWORD)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many failed sign-ins for this username from this address")
    expect(alert).to_contain_text("Try again after")
    expect(page.get_by_label("Username")).to_have_value("ops")
    _shot(page, "signin-throttled", shot)


def test_crm_deploy_result_is_the_first_status_even_with_a_flash(
    page: Any, crm_live: CrmLive, shot: Any
) -> None:
    live = crm_live
    _crm_sign_in(page, live)
    page.goto(live.url + "/organizations/acme/settings/crm")
    page.get_by_label("Environment").select_option(label="My Domain")
    page.get_by_label("My Domain URL").fill(live.auth.base_url)
    page.get_by_role("button", name="Connect to Salesforce").click()
    page.get_by_role("link", name="Allow").click()
    expect(page.get_by_text("Connected to Salesforce.")).to_be_visible()
    live.salesforce.load("deploy_flow")
    _refresh_and_wait(page, "Succeeded")

    # a page message (Disconnect's, vouched by its redirect) above the deploy's result
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("Disconnected from Salesforce")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("Succeeded")
    deployed = page.locator("dt:has-text('Deployed endpoint') + dd")
    expect(deployed).to_contain_text(
        "https://hooks.example.com/v2/features/agent-auto-provision/organizations/acme/"
    )
    expect(deployed.get_by_role("alert")).to_have_count(0)

    webhook = "/v2/features/agent-auto-provision/organizations/acme/integrations/provider/webhook"
    body = make_outbound_message([make_notification()], organization_id=ORG_ID)
    refused = httpx.post(
        live.url + webhook,
        params={"token": "a-stale-token"},
        content=body,
        headers={"content-type": "text/xml"},
        timeout=30,
    )
    assert refused.status_code == 401
    page.reload()
    expect(page.locator("dt:has-text('Last rejection') + dd")).to_contain_text(
        "The webhook token is wrong (401)"
    )
    _shot(page, "crm-deployed-with-flash-and-rejection", shot)


def test_a_short_search_says_it_cannot_use_the_index(page: Any, live: Live, shot: Any) -> None:
    _try(page, live, PASSWORD)
    expect(page.get_by_role("heading", name="Your organizations")).to_be_visible()
    page.goto(live.url + "/organizations/acme/users")
    page.get_by_label("Search").fill("zq")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("cannot use the search index")).to_be_visible()
    expect(page.get_by_text("No agent's name or username contains")).to_be_visible()
    _shot(page, "users-short-search", shot)


def test_on_a_phone_width_screen_only_tables_scroll_sideways(
    browser: Any, live: Live, shot: Any
) -> None:
    live.cli("org", "enable", "acme")
    body = make_outbound_message(
        [make_notification(Name="Ada Lovelace"), make_notification(IsActive=None)],
        organization_id=ORG_ID,
    )
    assert live.post(body).status_code == 200
    context = browser.new_context(viewport={"width": 420, "height": 800})
    try:
        page = context.new_page()
        _try(page, live, PASSWORD)
        expect(page.get_by_role("heading", name="Your organizations")).to_be_visible()
        for path in (
            "/",
            "/users",
            "/features",
            "/provisioning-log",
            "/reconcile",
            "/settings/crm",
        ):
            page.goto(live.url + ("/" if path == "/" else "/organizations/acme" + path))
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 420, f"{path} is {width} px wide on a 420 px screen"
            if path == "/":  # the organizations read one card each: every column in view
                attention = page.locator('td[data-label="Needs attention"]').first
                expect(attention).to_be_in_viewport(ratio=1)
                box_of = attention.bounding_box()
                assert box_of is not None and box_of["x"] + box_of["width"] <= 420
                expect(page.get_by_role("link", name="acme")).to_be_visible()
                _shot(page, "home-phone-width", shot)
        # the log's table is wider than the screen: it scrolls in its own box
        box = page.locator(".table-scroll").first
        page.goto(live.url + "/organizations/acme/provisioning-log")
        expect(page.get_by_role("cell", name="failed")).to_be_visible()
        assert box.evaluate("e => e.scrollWidth > e.clientWidth")
        _shot(page, "log-phone-width", shot)
    finally:
        context.close()


def test_a_pasted_user_id_with_spaces_around_it_filters_the_log(
    page: Any, live: Live, shot: Any
) -> None:
    """Newcomer finding: the field's maxlength of 18 cut a pasted id with a space before
    it, and the filter said the id was not a User id."""
    live.cli("org", "enable", "acme")
    body = make_outbound_message(
        [make_notification(Name="Ada Lovelace"), make_notification(Name="Grace Hopper")],
        organization_id=ORG_ID,
    )
    assert live.post(body).status_code == 200
    _try(page, live, PASSWORD)
    page.goto(live.url + "/organizations/acme/users")
    page.get_by_role("link", name="Grace Hopper").click()
    crm_id = page.url.rsplit("/", 1)[1]
    page.goto(live.url + "/organizations/acme/provisioning-log")
    field = page.get_by_label("Salesforce user id")
    field.press_sequentially(f"  {crm_id}  ")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("not a User id")).to_have_count(0)
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("Grace Hopper")
    _shot(page, "log-pasted-user-id", shot)
