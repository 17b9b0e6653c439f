"""The Reconcile page in headless Chromium against a live ``serve`` (CONTRACT section 5):
buttons Plan and Reconcile, the last plan's counts labelled with their section-6 keys, a
held mass deletion approved from the page, one rejected, the plan's rows and CSV.

The plans are made with ``agent-provision reconcile run`` against the reconcile cassettes
on the server's own store (the page's Plan button needs a stored connection, which a
cassette cannot serve to another process)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Live
from tests.deployer._harness import CLIENT_CREDENTIAL_ARGS, Harness


def _sign_in(page: Any, live: Live) -> None:
    page.goto(live.url + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your organizations")).to_be_visible()


def _count(page: Any, key: str) -> str:
    counts = page.get_by_label("Counts")
    return str(counts.locator(f"dt:text-is('{key}') + dd").first.inner_text())


def _held_plan(tmp_path: Path) -> str:
    cli = Harness(tmp_path)  # the same store as the live server (tmp_path / store.db)
    applied = cli.run("reconcile/pages", ["reconcile", "run", "acme", *CLIENT_CREDENTIAL_ARGS])
    assert applied.exit_code == 0, applied.output
    held = cli.run(
        "reconcile/deactivated",
        ["reconcile", "run", "acme", "--max-deletions", "2", "--json", *CLIENT_CREDENTIAL_ARGS],
    )
    assert held.exit_code == 8, held.output
    return str(json.loads(held.stdout)["planId"])


def test_held_plan_approved_from_the_page(page: Any, live: Live, shot: Any, tmp_path: Path) -> None:
    live.cli("org", "enable", "acme")
    plan_id = _held_plan(tmp_path)
    _sign_in(page, live)
    page.goto(live.url + "/organizations/acme/users")
    expect(page.get_by_role("row")).to_have_count(8)  # header + 7 agents
    page.get_by_role("link", name="Reconcile").click()
    expect(page.get_by_role("heading", name="Reconcile", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Plan", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Reconcile", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Approve deletions")).to_be_visible()
    expect(page.get_by_role("button", name="Reject")).to_be_visible()
    for key in ("create", "update", "restore", "deprovision", "unchanged", "failed", "notFound"):
        expect(page.get_by_label("Counts").get_by_text(key, exact=True)).to_be_visible()
    assert _count(page, "deprovision") == "7"
    assert _count(page, "create") == "0"
    expect(page.get_by_text(plan_id).first).to_be_visible()
    shot(page, "reconcile-held")
    # the plan's own page: its deprovisions alone, and the same two buttons (newcomer
    # finding: the rows page had neither)
    page.goto(live.url + f"/organizations/acme/reconcile/plans/{plan_id}")
    expect(page.get_by_role("button", name="Approve deletions")).to_be_visible()
    page.get_by_label("Counts").locator("dt:text-is('deprovision') + dd a").click()
    expect(page.get_by_text("Only the deprovision rows")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(7)
    shot(page, "reconcile-held-plan-deprovisions")
    page.goto(live.url + "/organizations/acme/reconcile")

    page.get_by_role("button", name="Approve deletions").click()
    expect(page.get_by_text("The held plan was applied.")).to_be_visible()
    expect(page.get_by_role("button", name="Approve deletions")).to_have_count(0)
    assert _count(page, "deprovision") == "7"
    # who approved the mass deletion, and who ran the reconcile that planned it
    expect(page.locator("dt:text-is('Approved by') + dd")).to_contain_text("operator:ops")
    expect(page.locator("dt:text-is('Run started by') + dd")).to_have_text(re.compile(r"^cli:"))
    shot(page, "reconcile-approved")
    page.get_by_role("link", name="Users").first.click()
    expect(page.get_by_text("No agents yet")).to_be_visible()

    page.goto(live.url + f"/organizations/acme/reconcile/plans/{plan_id}")
    expect(page.get_by_role("row")).to_have_count(8)
    shot(page, "reconcile-plan-rows")
    csv = page.request.get(live.url + f"/organizations/acme/reconcile/plans/{plan_id}.csv")
    assert csv.status == 200 and csv.text().startswith("crmId,action,reason,username")
    assert csv.text().count("deprovision") == 7


def test_held_plan_rejected_and_plan_without_connection(
    page: Any, live: Live, shot: Any, tmp_path: Path
) -> None:
    live.cli("org", "enable", "acme")
    _held_plan(tmp_path)
    _sign_in(page, live)
    page.goto(live.url + "/organizations/acme/reconcile")
    page.get_by_role("button", name="Reject").click()
    expect(page.get_by_text("The plan was rejected: nothing was written.")).to_be_visible()
    expect(page.get_by_text("rejected", exact=True)).to_be_visible()
    page.goto(live.url + "/organizations/acme/users")
    expect(page.get_by_role("row")).to_have_count(8)  # nothing deprovisioned
    page.goto(live.url + "/organizations/acme/reconcile")
    page.get_by_role("button", name="Plan", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("has no Salesforce connection")
    expect(page.get_by_text("press Plan to see")).to_have_count(0)
    shot(page, "reconcile-no-connection")
