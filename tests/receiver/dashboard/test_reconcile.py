"""The Reconcile page's Last run (receiver.dashboard.reconcile): when it ended, which plan
it made, why it failed; a Sync now is never it. The runs are jobs written here directly
(``receiver.jobs``); the reads behind them are the CLI's and the browser tests'."""

from __future__ import annotations

import re

from receiver.jobs import JobKind, JobOutcome, run_job, start_job
from tests.receiver.dashboard._harness import Dash


def _last_run(dash: Dash) -> str:
    html = dash.client.get(f"/organizations/{dash.org}/reconcile").text
    found = re.search(r'<h2 id="job-heading">(.*?)</section>', html, re.S)
    assert found is not None, "no Last run section"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(1))).strip()


def test_the_last_run_says_when_it_ended_and_which_plan_it_made(dash: Dash) -> None:
    dash.sign_in()
    dash.add_plan("p1", status="applied")
    run_job(
        start_job(dash.engine, dash.org, JobKind.RECONCILE, actor="scheduler"),
        lambda p: JobOutcome(True, result={"planId": "p1", "status": "applied"}),
    )
    text = _last_run(dash)
    assert re.fullmatch(
        r"Last run Finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: plan p1 applied\. "
        r"Started by scheduler\.",
        text,
    )
    html = dash.client.get(f"/organizations/{dash.org}/reconcile").text
    assert f'href="/organizations/{dash.org}/reconcile/plans/p1"' in html


def test_a_failed_run_says_when_and_why_and_a_later_sync_does_not_replace_it(dash: Dash) -> None:
    from sf_metadata.errors import SalesforceUnreadable

    dash.sign_in()

    def unreadable(p: object) -> JobOutcome:
        raise SalesforceUnreadable("page 3 of the User query timed out: nothing was written")

    run_job(start_job(dash.engine, dash.org, JobKind.RECONCILE), unreadable)
    run_job(
        start_job(dash.engine, dash.org, JobKind.RECONCILE_USERS),
        lambda p: JobOutcome(True, result={"planId": "p2", "status": "applied"}),
    )
    text = _last_run(dash)
    assert re.match(
        r"Last run Failed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, nothing was written:", text
    )
    assert text.endswith("page 3 of the User query timed out: nothing was written")
    assert "p2" not in text


def test_the_last_run_says_when_its_plan_was_decided_since(dash: Dash) -> None:
    """Newcomer finding: after Reject, Last run still read "plan p3 held" above a Last plan
    that said rejected."""
    dash.sign_in()
    dash.add_plan("p3", status="rejected")
    run_job(
        start_job(dash.engine, dash.org, JobKind.RECONCILE),
        lambda p: JobOutcome(True, result={"planId": "p3", "status": "held"}),
    )
    assert _last_run(dash).endswith(": plan p3 held, now rejected (see Last plan).")


def test_a_plans_counts_link_to_their_rows(dash: Dash) -> None:
    """Newcomer finding: a held plan's 15 deprovisions were scattered among 300 rows. Each
    count links to its rows alone; an action that is not a count key shows every row."""
    import zlib

    import orjson

    from receiver.db import transaction
    from receiver.reconcile.tables import ReconcilePlanRecord
    from tests.factories import sf_id

    doc = {
        "rows": [
            {"c": sf_id("005", n), "a": a, "r": "why", "u": f"u{n}@acme.com"}
            for n, a in enumerate(["create", "deprovision", "create", "unchanged"], start=1)
        ],
        "notFound": [],
    }
    with transaction(dash.engine) as session:
        session.add(
            ReconcilePlanRecord(
                id="p4",
                organization_id=dash.org,
                created_at=dash.clock(),
                kind="full",
                status="held",
                counts={"create": 2, "deprovision": 1, "unchanged": 1},
                hold_reason="1 deprovision",
                rows=zlib.compress(orjson.dumps(doc)),
            )
        )
    dash.sign_in()
    plan = f"/organizations/{dash.org}/reconcile/plans/p4"

    def users(html: str) -> list[str]:
        return re.findall(r"<tr><td><code>(005\w{15})</code>", html)

    whole = dash.client.get(plan).text
    assert len(users(whole)) == 4
    assert f'href="{plan}?action=deprovision"' in whole and ">Approve deletions</button>" in whole
    only = dash.client.get(plan, params={"action": "deprovision"}).text
    assert users(only) == [sf_id("005", 2)] and "Only the <strong>deprovision</strong> rows" in only
    assert len(users(dash.client.get(plan, params={"action": "<b>"}).text)) == 4
