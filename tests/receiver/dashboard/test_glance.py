"""The home page's health of each organization (receiver.dashboard.glance): the last
message from Salesforce, failed notifications waiting for a replay, a held reconcile
plan and refused webhook requests, each a link to the page that fixes it; nothing for a
healthy organization."""

from __future__ import annotations

import re
from html import unescape

from receiver.jobs import JobKind, JobOutcome, run_job, start_job
from receiver.organizations import webhook_path
from tests.factories import make_notification, make_outbound_message, sf_id
from tests.receiver.dashboard._harness import Dash


def _row(d: Dash, org: str) -> str:
    """The text and links of ``org``'s row on the home page."""
    response = d.client.get("/")
    assert response.status_code == 200
    for row in response.text.split("<tr")[1:]:
        if f'href="/organizations/{org}/users"' in row:
            return unescape(row)
    raise AssertionError(f"no row for {org}")


def _attention(row: str) -> list[tuple[str, str]]:
    """``(path, text)`` of each "Needs attention" link in a row."""
    return re.findall(r'<a class="problem" href="([^"]+)">([^<]+)</a>', row)


def test_a_healthy_organization_needs_nothing_and_shows_its_last_message(dash: Dash) -> None:
    dash.sign_in()
    assert "never" in _row(dash, dash.org)
    dash.post_message(make_notification(Name="Fine User"))
    row = _row(dash, dash.org)
    assert '<time datetime="2026-11-29T12:00:00Z">' in row and "(processed)" in row
    assert _attention(row) == [] and "nothing" in row


def test_failed_notifications_are_counted_per_organization_until_a_later_change_overtakes_them(
    dash: Dash,
) -> None:
    dash.sign_in()
    first, second = sf_id("005", 901), sf_id("005", 902)
    dash.post_message(
        make_notification(first, IsActive=None), make_notification(second, IsActive=None)
    )
    base = f"/organizations/{dash.org}"
    assert _attention(_row(dash, dash.org)) == [
        (f"{base}/provisioning-log?action=failed", "2 failed notifications to replay")
    ]
    # a later change of the first user that applies overtakes its failure
    dash.post_message(make_notification(first, SystemModstamp="2026-11-29T13:00:00.000Z"))
    assert _attention(_row(dash, dash.org)) == [
        (f"{base}/provisioning-log?action=failed", "1 failed notification to replay")
    ]
    other = dash.new_org()
    assert _attention(_row(dash, other)) == []  # counted per organization


def test_a_held_plan_and_refused_requests_are_listed_most_urgent_first(dash: Dash) -> None:
    dash.sign_in()
    dash.add_plan("p1", status="held")
    body = make_outbound_message([make_notification()], organization_id=dash.sf_org)
    refused = dash.client.post(webhook_path(dash.org), params={"token": "old-token"}, content=body)
    assert refused.status_code == 401
    base = f"/organizations/{dash.org}"
    row = _row(dash, dash.org)
    assert [path for path, _ in _attention(row)] == [f"{base}/reconcile", f"{base}/settings/crm"]
    assert "Reconcile plan held" in row and "Webhook requests refused" in row
    assert "old-token" not in row and dash.token not in row
    # a message that arrives after the refusal means the token is right again
    dash.clock.advance(minutes=1)
    dash.post_message(make_notification())
    assert [path for path, _ in _attention(_row(dash, dash.org))] == [f"{base}/reconcile"]


def test_a_failed_refresh_webhook_needs_attention_until_one_succeeds(dash: Dash) -> None:
    """The install on enable runs Refresh Webhook in the background: when it fails, the
    home page must not say "nothing" while Salesforce sends nothing here."""
    dash.sign_in()
    crm = f"/organizations/{dash.org}/settings/crm"

    def refresh(succeeded: bool) -> None:
        progress = start_job(dash.engine, dash.org, JobKind.REFRESH_WEBHOOK)
        run_job(progress, lambda _: JobOutcome(succeeded, problems=("preflight failed",)))

    refresh(False)
    assert _attention(_row(dash, dash.org)) == [
        (crm, "Refresh Webhook failed: see why on the CRM page")
    ]
    refresh(True)
    assert _attention(_row(dash, dash.org)) == []
