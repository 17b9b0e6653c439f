"""``Sync now`` on an agent page and ``Sync user`` on the Reconcile page
(receiver.dashboard.sync_user): one Salesforce user read with the stored connection and
applied through the reconcile path; the page then says what was decided, once. The
Salesforce side is ``tests.fake_salesforce`` (the REST query resource in process)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.db import transaction
from tests.factories import make_notification, sf_id
from tests.fake_salesforce import FakeSalesforce
from tests.receiver.dashboard._harness import Dash
from tests.user_records import make_user_record

NEWER = "2026-11-21T10:00:00.000Z"


@pytest.fixture
def salesforce(dash: Dash, key: bytes, monkeypatch: pytest.MonkeyPatch) -> FakeSalesforce:
    """The organization's stored connection (its secrets never read: the reader is the
    fake's), its reads served by a fake holding users 1 and 2 (user 1 renamed since its
    notification)."""
    from receiver.dashboard import sync_user

    fake = FakeSalesforce(
        dash.sf_org,
        [
            make_user_record(1, Name="Ada Renamed", SystemModstamp=NEWER),
            make_user_record(2, Name="Only In Salesforce"),
        ],
    )
    with transaction(dash.engine) as session:
        fake.store_connection(session, dash.org, key=key, now=datetime(2026, 11, 29, tzinfo=UTC))
    monkeypatch.setattr(sync_user, "reader_factory", lambda page: lambda name: fake.reader())
    return fake


def _ada() -> dict[str, object]:
    """User 1's notification as the webhook got it, before its rename in Salesforce."""
    return make_notification(
        user_id=sf_id("005", 1), Name="Ada", Username="agent1@acme.com", Email="agent1@acme.com"
    )


def _agent(dash: Dash, n: int) -> str:
    response = dash.client.get(f"/organizations/{dash.org}/users/{sf_id('005', n)}")
    assert response.status_code == 200
    return response.text


def test_sync_now_reads_the_user_and_applies_it_and_says_what_was_decided_once(
    dash: Dash, salesforce: FakeSalesforce
) -> None:
    dash.sign_in()
    dash.post_message(_ada())
    page = _agent(dash, 1)
    assert ">Sync now</button>" in page
    response = dash.post_form(
        f"/organizations/{dash.org}/users/{sf_id('005', 1)}/sync",
        {},
        page=f"/organizations/{dash.org}/users/{sf_id('005', 1)}",
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(f"/organizations/{dash.org}/users/{sf_id('005', 1)}?synced=")
    after = dash.client.get(location).text
    assert (
        "Read from Salesforce just now: <strong>update</strong>. IsActive is true: agent updated (Name changed)."
        in after
    )
    assert "Ada Renamed" in after
    assert "WHERE Id IN ('" + sf_id("005", 1) + "')" in salesforce.queries[-1]
    # the decision is in the timeline, linked to its plan of kind "chosen"
    plan_id = location.rsplit("=", 1)[1]
    assert f"/reconcile/plans/{plan_id}" in after
    timeline = after.split("<h2>Timeline</h2>")[1]
    # each row names its source and shows its action as the log does (newcomer finding)
    assert '<span class="hint">Reconcile</span>' in timeline
    assert '<span class="hint">Outbound Message</span>' in timeline
    assert '<span class="pill ok">updated</span>' in timeline
    # the log's row links its plan too (newcomer: it named the plan without a link)
    log = dash.client.get(f"/organizations/{dash.org}/provisioning-log?source=reconcile").text
    assert f'reconcile plan <a href="/organizations/{dash.org}/reconcile/plans/{plan_id}">' in log
    plan = dash.client.get(f"/organizations/{dash.org}/reconcile/plans/{plan_id}").text
    assert "(chosen users: Sync now)" in plan
    # who did it: the plan's run and its job were started by the signed-in operator
    assert "<dt>Run started by</dt><dd><bdi>operator:ops</bdi></dd>" in plan  # isolated
    from receiver.jobs import JobKind, latest_jobs

    with transaction(dash.engine, read_only=True) as session:
        (job,) = latest_jobs(session, dash.org, JobKind.RECONCILE_USERS)
    assert job.started_by == "operator:ops"
    # the report is one-shot: a reload or the address alone shows nothing
    assert "Read from Salesforce just now" not in dash.client.get(location).text
    # it is not the organization's last reconcile: the Reconcile page has no plan yet
    assert "No plan has been made" in dash.client.get(f"/organizations/{dash.org}/reconcile").text


def test_sync_user_provisions_one_who_has_no_page_yet_and_names_an_unknown_id(
    dash: Dash, salesforce: FakeSalesforce
) -> None:
    dash.sign_in()
    reconcile = f"/organizations/{dash.org}/reconcile"
    assert 'action="/organizations/' + dash.org + '/reconcile/sync-user"' in (
        dash.client.get(reconcile).text
    )
    created = dash.post_form(
        reconcile + "/sync-user", {"user": sf_id("005", 2)[:15]}, page=reconcile
    )
    assert created.headers["location"].startswith(
        f"/organizations/{dash.org}/users/{sf_id('005', 2)}?synced="
    )
    page = dash.client.get(created.headers["location"]).text
    assert "<strong>create</strong>" in page and "Only In Salesforce" in page
    unknown = dash.post_form(reconcile + "/sync-user", {"user": sf_id("005", 9)}, page=reconcile)
    assert unknown.headers["location"] == reconcile + "?flash=sync-not-found"
    assert (
        "Salesforce returned no user with that id"
        in dash.client.get(unknown.headers["location"]).text
    )
    bad = dash.post_form(reconcile + "/sync-user", {"user": "<b>Ada</b>"}, page=reconcile)
    assert bad.headers["location"] == reconcile + "?flash=sync-bad-id"
    assert len(salesforce.queries) == 4  # two reads (org check + users); the bad id none


def test_sync_while_disabled_only_plans_and_while_a_reconcile_runs_reads_nothing(
    dash: Dash, salesforce: FakeSalesforce
) -> None:
    from receiver.jobs import JobKind, start_job
    from receiver.organizations import set_enabled

    dash.sign_in()
    dash.post_message(_ada())
    agent = f"/organizations/{dash.org}/users/{sf_id('005', 1)}"
    with transaction(dash.engine) as session:
        set_enabled(session, name=dash.org, enabled=False, now=dash.clock())
    planned = dash.post_form(agent + "/sync", {}, page=agent)
    page = dash.client.get(planned.headers["location"]).text
    assert "this was only planned, nothing was applied" in page
    assert "Ada Renamed" not in page.split("Timeline")[0]  # the agent kept its name
    with transaction(dash.engine) as session:
        set_enabled(session, name=dash.org, enabled=True, now=dash.clock())
    reads = len(salesforce.queries)
    start_job(dash.engine, dash.org, JobKind.RECONCILE)  # another worker's run holds the lease
    busy = dash.post_form(agent + "/sync", {}, page=agent)
    assert busy.headers["location"] == agent + "?flash=reconcile-busy"
    assert "already running" in dash.client.get(busy.headers["location"]).text
    assert len(salesforce.queries) == reads


def test_without_a_connection_there_is_no_button_and_a_post_says_why(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(_ada())
    agent = f"/organizations/{dash.org}/users/{sf_id('005', 1)}"
    page = dash.client.get(agent).text
    assert ">Sync now</button>" not in page and "With a Salesforce connection" in page
    assert (
        "/reconcile/sync-user" not in dash.client.get(f"/organizations/{dash.org}/reconcile").text
    )
    refused = dash.post_form(agent + "/sync", {}, page=agent)
    assert refused.headers["location"] == agent + "?flash=reconcile-no-connection"


def test_sync_needs_the_csrf_token(dash: Dash, salesforce: FakeSalesforce) -> None:
    dash.sign_in()
    dash.post_message(_ada())
    refused = dash.client.post(
        f"/organizations/{dash.org}/users/{sf_id('005', 1)}/sync", follow_redirects=False
    )
    assert refused.status_code == 403
    assert salesforce.queries == []


def test_a_sync_never_hides_a_held_plan(dash: Dash, salesforce: FakeSalesforce) -> None:
    dash.sign_in()
    dash.post_message(_ada())
    dash.add_plan("held1", status="held")
    agent = f"/organizations/{dash.org}/users/{sf_id('005', 1)}"
    dash.post_form(agent + "/sync", {}, page=agent)  # a newer plan, applied
    assert "Reconcile plan held" in dash.client.get("/").text
    reconcile = dash.client.get(f"/organizations/{dash.org}/reconcile").text
    assert "held1" in reconcile and ">Approve deletions</button>" in reconcile


def test_a_sync_is_not_the_reconcile_pages_last_run(
    dash: Dash, salesforce: FakeSalesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack finding: a failed Sync now showed as "The last reconcile failed"."""
    from receiver.dashboard import sync_user
    from sf_metadata.errors import SalesforceUnreadable

    dash.sign_in()
    dash.post_message(_ada())
    agent = f"/organizations/{dash.org}/users/{sf_id('005', 1)}"
    reconcile = f"/organizations/{dash.org}/reconcile"
    dash.post_form(agent + "/sync", {}, page=agent)
    assert "Last run" not in dash.client.get(reconcile).text

    def unreachable(name: str) -> Any:
        raise SalesforceUnreadable("the Organization query: cannot reach Salesforce")

    monkeypatch.setattr(sync_user, "reader_factory", lambda page: unreachable)
    failed = dash.post_form(agent + "/sync", {}, page=agent)
    assert failed.headers["location"].startswith(agent + "?flash=sync-unreadable&sync_job=")
    shown = dash.client.get(failed.headers["location"]).text
    # the page says why (newcomer finding: the cause was on no page), once
    assert (
        "Salesforce could not be read: nothing was written. Why: the Organization query: "
        "cannot reach Salesforce." in shown
    )
    assert "cannot reach Salesforce" not in dash.client.get(failed.headers["location"]).text
    assert "The last reconcile failed" not in dash.client.get(reconcile).text
    # the Reconcile page's Sync user says why too
    form = dash.post_form(
        reconcile + "/sync-user", {"user": f"  {sf_id('005', 2)} "}, page=reconcile
    )
    assert form.headers["location"].startswith(reconcile + "?flash=sync-unreadable&sync_job=")
    assert "Why: the Organization query" in dash.client.get(form.headers["location"]).text


def test_a_sync_while_disabled_of_a_user_with_no_page_shows_the_plan(
    dash: Dash, salesforce: FakeSalesforce
) -> None:
    """Attack finding: it ended on a 404 that explained nothing."""
    from receiver.organizations import set_enabled

    dash.sign_in()
    with transaction(dash.engine) as session:
        set_enabled(session, name=dash.org, enabled=False, now=dash.clock())
    reconcile = f"/organizations/{dash.org}/reconcile"
    planned = dash.post_form(reconcile + "/sync-user", {"user": sf_id("005", 2)}, page=reconcile)
    page = dash.client.get(planned.headers["location"])
    assert page.status_code == 200
    assert "<strong>create</strong>" in page.text and "only planned" in page.text
    # without the Sync's answer, the id alone is still no page
    assert dash.client.get(planned.headers["location"].split("?")[0]).status_code == 404


def test_a_sync_gives_up_soon_when_salesforce_is_down(
    dash: Dash, salesforce: FakeSalesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newcomer finding: with Salesforce unreachable the page held the browser 62 s (a
    reconcile's six attempts, backing off to 32 s). A person waits: two attempts, 1 s
    apart."""
    from receiver.dashboard import sync_user

    waits: list[float] = []

    def reader(name: str) -> Any:
        r = salesforce.reader()
        r.sleep = waits.append
        return r

    monkeypatch.setattr(sync_user, "reader_factory", lambda page: reader)
    dash.sign_in()
    dash.post_message(_ada())
    agent = f"/organizations/{dash.org}/users/{sf_id('005', 1)}"
    salesforce.unavailable = True
    failed = dash.post_form(agent + "/sync", {}, page=agent)
    assert "flash=sync-unreadable" in failed.headers["location"]
    shown = dash.client.get(failed.headers["location"]).text
    assert "gave up after 2 attempts" in shown
    assert shown.count("nothing was written") == 1  # said once, by the page's sentence
    assert waits == [1.0]


def test_an_id_typed_in_capitals_is_that_user(dash: Dash, salesforce: FakeSalesforce) -> None:
    """Attack finding: an 18-character id in other letter case named another user (and
    Salesforce returned none). Typed or pasted, it is read as Salesforce reads it."""
    dash.sign_in()
    dash.post_message(_ada())
    reconcile = f"/organizations/{dash.org}/reconcile"
    shouted = sf_id("005", 2).upper()
    synced = dash.post_form(reconcile + "/sync-user", {"user": shouted}, page=reconcile)
    assert synced.headers["location"].startswith(
        f"/organizations/{dash.org}/users/{sf_id('005', 2)}?synced="
    )
    assert "Only In Salesforce" in dash.client.get(synced.headers["location"]).text
    # the agent page's address and the log's filter read it so too
    lower = sf_id("005", 1).lower()
    assert "Ada" in dash.client.get(f"/organizations/{dash.org}/users/{lower}").text
    log = dash.client.get(f"/organizations/{dash.org}/provisioning-log", params={"user": lower})
    assert "not a User id" not in log.text and "No notification matches" not in log.text
