"""The dashboard in a real headless Chromium against a live ``serve`` (issue 8 "Done
when"): sign in; flip the switch; post an Outbound Message and see the user on Users;
edit it and see the change; deactivate it and see it gone; see a failed notification in
the log (and replay it once replay exists). Every page is captured at 1366x768."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import ORG_ID, PASSWORD, Live
from tests.factories import make_notification, make_outbound_message, next_id


def _sign_in(page: Any, live: Live) -> None:
    page.goto(live.url + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your organizations")).to_be_visible()


def _message(*notifications: dict[str, Any]) -> bytes:
    return make_outbound_message(list(notifications), organization_id=ORG_ID)


def test_the_admin_walkthrough(page: Any, live: Live, shot: Any) -> None:
    page.goto(live.url + "/login")
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill("wrong password here")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    shot(page, "01-login-wrong-password")

    _sign_in(page, live)
    home_row = page.get_by_role("row", name=re.compile(r"^acme\b"))
    expect(home_row).to_contain_text("never")  # Last message
    expect(home_row).to_contain_text("nothing")  # Needs attention
    shot(page, "02-home")
    page.get_by_role("link", name="acme").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()

    switch = page.get_by_role("switch", name="Agent Auto Provision")
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(switch).to_have_text("Disabled")
    shot(page, "03-users-empty-disabled")
    switch.click()
    switch = page.get_by_role("switch", name="Agent Auto Provision")
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(switch).to_have_text("Enabled")

    user = next_id("005")
    assert (
        live.post(
            _message(
                make_notification(user_id=user, Name="Grace Hopper", Username="grace@acme.com")
            )
        ).status_code
        == 200
    )
    page.reload()
    row = page.get_by_role("row").filter(has_text="Grace Hopper")
    expect(row).to_contain_text("grace@acme.com")
    expect(row.get_by_role("cell", name="Enabled", exact=True)).to_be_visible()
    expect(row.get_by_role("cell", name="Yes", exact=True)).to_be_visible()
    shot(page, "04-users-one-agent")

    edited = make_notification(
        user_id=user,
        Name="Grace B. Hopper",
        Username="grace@acme.com",
        CallCenterId=None,
        SystemModstamp="2026-11-21T10:00:00.000Z",
    )
    assert live.post(_message(edited)).status_code == 200
    page.reload()
    row = page.get_by_role("row").filter(has_text="Grace B. Hopper")
    expect(row.get_by_role("cell", name="Disabled", exact=True)).to_be_visible()
    expect(row.get_by_role("cell", name="No", exact=True)).to_be_visible()

    page.get_by_label("Search").fill("b. hop")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("row").filter(has_text="Grace B. Hopper")).to_be_visible()
    shot(page, "05-users-search")

    page.get_by_role("link", name="Grace B. Hopper").click()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    expect(page.get_by_text("no call center")).to_be_visible()
    shot(page, "06-agent")

    gone = make_notification(
        user_id=user,
        Name="Grace B. Hopper",
        IsActive="false",
        SystemModstamp="2026-11-22T10:00:00.000Z",
    )
    assert live.post(_message(gone)).status_code == 200
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_text("No agents yet.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="Grace B. Hopper")).to_have_count(0)

    xss = make_notification(Name="<script>alert(1)</script>")
    broken = make_notification(IsActive=None)
    assert live.post(_message(xss, broken)).status_code == 200
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("link", name="<script>alert(1)</script>")).to_be_visible()
    assert dialogs == []

    page.get_by_role("link", name="Provisioning log").click()
    failed = page.locator("tr.failed").filter(has_text="IsActive")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("failed")
    shot(page, "07-provisioning-log")
    page.get_by_label("Action").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    shot(page, "08-provisioning-log-failed")
    failed.get_by_role("button", name="Replay").click()
    expect(page.get_by_text("Replayed, and it failed again")).to_be_visible()
    expect(page.locator("tr.failed").filter(has_text="IsActive")).to_have_count(2)
    shot(page, "08b-provisioning-log-replayed")

    page.get_by_role("link", name="Features").click()
    expect(page.get_by_role("cell", name="operator:ops")).to_be_visible()
    shot(page, "09-features")

    page.get_by_role("link", name="CRM").click()
    expect(page.get_by_label("Last message")).to_be_visible()
    shot(page, "10-crm")

    page.get_by_role("link", name="Reconcile").click()
    shot(page, "11-reconcile")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.goto(live.url + "/organizations/acme/users")
    expect(page).to_have_url(re.compile(r"/login"))


def test_another_sites_form_changes_nothing(page: Any, live: Live) -> None:
    """A cross-site POST (a page on another origin submitting to the switch) is refused."""
    _sign_in(page, live)
    token = page.locator("form[action='/logout'] input[name=csrf_token]").input_value()
    html = (
        "<form id=f method=post action='"
        + live.url
        + "/organizations/acme/features/agent-auto-provision'>"
        f"<input name=csrf_token value='{token}'><input name=expected value=disabled></form>"
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(
        "http://evil.test/", lambda route: route.fulfill(body=html, content_type="text/html")
    )
    page.goto("http://evil.test/")
    # SameSite=Lax keeps the cookie off this POST, so it arrives signed out: sign-in page.
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(live.url + "/organizations/acme/features")
    expect(page.get_by_role("switch", name="Agent Auto Provision")).to_have_attribute(
        "aria-checked", "false"
    )
