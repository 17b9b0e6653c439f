"""The CRM page's Salesforce connection and Refresh Webhook (``receiver/dashboard/
salesforce.py``) through Starlette's TestClient: the Connect form and its redirect, login
URLs refused, Refresh with the stored connection against a cassette, Refresh pressed while
one runs, Reconnect, the callback's refusals. The browser tests are in
``tests/browser/test_crm.py``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import ValidationError

from deployer.deploy import Timing
from receiver.db import transaction
from receiver.jobs import JobKind, JobOutcome, latest_jobs, run_job, start_job
from receiver.refresh import serve_timing
from receiver.salesforce_connection import mark_reconnect, save_connection
from receiver.settings import Settings
from sf_metadata.errors import AuthenticationError, SalesforceError, SalesforceUnreadable
from tests.deployer._vcr import HOST, make_vcr
from tests.receiver.dashboard._harness import Dash, MakeDash

CLIENT_ID = "3MVG9FakeClientId"
ROLE_STATUS = re.compile(r'<[^>]*role="status"[^>]*>(.*?)</div>', re.S)


def _dash(make_dash: MakeDash, key: bytes, **settings: Any) -> Dash:
    """Signed in; the app uses the key the factory encrypted the webhook tokens with."""
    d = make_dash(salesforce_client_id=CLIENT_ID, secret_key=key.decode(), **settings)
    d.sign_in()
    return d


def _crm(d: Dash) -> str:
    return f"/organizations/{d.org}/settings/crm"


def _store(d: Dash, key: bytes, *, kind: str = "session") -> None:
    with transaction(d.engine) as session:
        save_connection(
            session,
            organization=d.org,
            kind=kind,
            instance_url=f"https://{HOST}",
            salesforce_org_id=d.sf_org,
            is_sandbox=False,
            username="integration@acme.example.com",
            user_id="005000000000001AAA",
            login_url="https://login.salesforce.com",
            secrets={
                "access_token": "page-test-access-token",
                "refresh_token": "page-test-refresh",
            },
            key=key,
            now=datetime(2026, 11, 29, 11, 0, tzinfo=UTC),
        )


def _first_status(html: str) -> str:
    match = ROLE_STATUS.search(html)
    assert match is not None, "no role=status element"
    return re.sub(r"<[^>]+>", " ", match.group(1))


def test_not_connected_page_has_the_connect_form(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key)
    page = d.client.get(_crm(d))
    assert page.status_code == 200
    assert "Not connected." in page.text
    assert '<label for="environment">Environment</label>' in page.text
    assert '<label for="my-domain-url">My Domain URL</label>' in page.text
    assert "Connect to Salesforce</button>" in page.text
    assert 'aria-labelledby="refresh-heading"' in page.text and ">Refresh</button>" in page.text
    csp = page.headers["content-security-policy"]
    assert "form-action 'self' https://login.salesforce.com" in csp


def test_connect_redirects_to_the_authorize_url_with_pkce(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key)
    answer = d.post_form(_crm(d) + "/connect", {"environment": "sandbox"}, page=_crm(d))
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("https://test.salesforce.com/services/oauth2/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["http://testserver/oauth/salesforce/callback"]
    assert len(query["state"][0]) >= 40


def test_a_login_url_outside_the_accepted_ones_is_refused(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key)
    answer = d.post_form(
        _crm(d) + "/connect",
        {"environment": "my-domain", "my_domain_url": "https://login.salesforce.com.evil.com"},
        page=_crm(d),
    )
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text and "is not a Salesforce login URL" in answer.text


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\.my.salesforce.com",
        "evil.example\\.my.salesforce.com",
        "https://evil.example%2f.my.salesforce.com",
    ],
)
def test_a_my_domain_url_reaching_another_host_is_refused(
    make_dash: MakeDash, key: bytes, url: str
) -> None:
    """Attack finding: a backslash in the My Domain URL passed the host check, and the
    callback's token request (code, verifier, the External Client App's secret) went to
    the host before it. Refused with the form's page; no sign-in is pending."""
    from sqlmodel import select

    from receiver.salesforce_oauth import OAuthState

    d = _dash(make_dash, key, salesforce_client_secret="app-secret-value")
    answer = d.post_form(
        _crm(d) + "/connect", {"environment": "my-domain", "my_domain_url": url}, page=_crm(d)
    )
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text and "is not a Salesforce login URL" in answer.text
    with transaction(d.engine, read_only=True) as session:
        assert session.exec(select(OAuthState)).all() == []


def test_another_operators_state_is_refused_and_left_for_them(
    make_dash: MakeDash, key: bytes
) -> None:
    """Attack finding: the callback took any pending state of an organization the viewer
    manages, so a link carrying one operator's ``state`` (and a code for it) finished that
    sign-in in another operator's browser (RFC 6749 10.12: bind the state to the user
    agent's sign-in). It is refused as unknown and stays pending for its own operator."""
    from sqlmodel import select

    from receiver.salesforce_oauth import OAuthState
    from tests.receiver.dashboard._harness import browser, sign_in_with

    d = _dash(make_dash, key)
    started = d.post_form(_crm(d) + "/connect", {"environment": "sandbox"}, page=_crm(d))
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    d.add_operator("other")
    other = browser(d, "198.51.100.4")
    assert sign_in_with(other, "other").status_code == 303
    answer = other.get("/oauth/salesforce/callback", params={"code": "x", "state": state})
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text and "unknown" in answer.text
    with transaction(d.engine, read_only=True) as session:
        pending = session.exec(select(OAuthState)).one()
    assert pending.consumed_at is None


def test_an_unknown_state_on_the_callback_is_refused(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key)
    answer = d.client.get("/oauth/salesforce/callback", params={"code": "x", "state": "forged"})
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text and "unknown" in answer.text


def test_refresh_without_a_connection_says_connect_first(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key)
    answer = d.post_form(_crm(d) + "/refresh", {}, page=_crm(d))
    assert answer.status_code == 303
    page = d.client.get(answer.headers["location"])
    assert "Connect to Salesforce first" in page.text
    with transaction(d.engine, read_only=True) as session:
        assert latest_jobs(session, d.org, JobKind.REFRESH_WEBHOOK) == []
    # said once: a reload, or a link with a notice, says nothing
    assert "Connect to Salesforce first" not in d.client.get(answer.headers["location"]).text
    linked = d.client.get(_crm(d), params={"notice": "connected"}).text
    assert "Connected to Salesforce." not in linked


def test_refresh_pressed_while_one_runs_shows_the_running_one(
    make_dash: MakeDash, key: bytes
) -> None:
    d = _dash(make_dash, key)
    _store(d, key)
    running = start_job(d.engine, d.org, JobKind.REFRESH_WEBHOOK)  # another worker's
    running.step("deploying")
    answer = d.post_form(_crm(d) + "/refresh", {}, page=_crm(d))
    assert answer.status_code == 303, answer.text
    page = d.client.get(answer.headers["location"])
    assert "already running" in page.text
    assert "Running" in _first_status(page.text)
    assert '<meta http-equiv="refresh" content="2">' in page.text  # reloads without JS
    with transaction(d.engine, read_only=True) as session:
        assert len(latest_jobs(session, d.org, JobKind.REFRESH_WEBHOOK)) == 1


def test_the_running_page_reloads_as_often_as_configured(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key, dashboard_reload_seconds=7)
    _store(d, key)
    start_job(d.engine, d.org, JobKind.REFRESH_WEBHOOK).step("deploying")
    page = d.client.get(_crm(d))
    assert '<meta http-equiv="refresh" content="7">' in page.text


def test_deploy_polling_of_a_page_refresh_follows_the_setting() -> None:
    assert serve_timing(Settings()) == Timing()  # 1 s first, 1.5 times longer, up to 15 s
    quick = serve_timing(Settings(deploy_poll_seconds=0.01))
    assert (quick.first_interval, quick.max_interval) == (0.01, 15.0)
    slow = serve_timing(Settings(deploy_poll_seconds=20))
    assert (slow.first_interval, slow.max_interval) == (20.0, 20.0)
    for bad in ({"deploy_poll_seconds": 0}, {"dashboard_reload_seconds": 0}):
        with pytest.raises(ValidationError):
            Settings(**bad)  # type: ignore[arg-type]


def test_refresh_deploys_with_the_stored_connection_in_the_background(
    make_dash: MakeDash, key: bytes
) -> None:
    d = _dash(make_dash, key, deploy_poll_seconds=0.01)
    # the cassette's org, and a webhook URL Salesforce could reach
    d.org = d.new_org(salesforce_org_id="00D000000000001EAA", base_url="https://hooks.example.com")
    d.sf_org = "00D000000000001EAA"
    _store(d, key)
    with make_vcr().use_cassette("deploy_flow.yaml", allow_playback_repeats=False) as cassette:
        answer = d.post_form(_crm(d) + "/refresh", {}, page=_crm(d))
        assert answer.status_code == 303
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with transaction(d.engine, read_only=True) as session:
                jobs = latest_jobs(session, d.org, JobKind.REFRESH_WEBHOOK)
            if jobs and jobs[0].done:
                break
            time.sleep(0.05)
        assert jobs and jobs[0].done, "the Refresh job did not finish"
        assert cassette.all_played, (jobs[0].state, jobs[0].problems)
    page = d.client.get(_crm(d))
    status = _first_status(page.text)
    assert "Succeeded" in status and "Flow:Agent_Auto_Provision_User_Sync_Flow" in status
    assert "page-test-access-token" not in page.text and "page-test-refresh" not in page.text
    assert '<meta http-equiv="refresh"' not in page.text


def test_a_refused_refresh_token_asks_to_reconnect(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key)
    _store(d, key, kind="oauth")
    with transaction(d.engine) as session:
        mark_reconnect(session, d.org, "Salesforce refused the stored refresh token: invalid_grant")
    page = d.client.get(_crm(d))
    assert "Reconnect" in page.text and "invalid_grant" in page.text
    assert "Connect to Salesforce</button>" in page.text


def test_disconnect_forgets_the_connection(make_dash: MakeDash, key: bytes) -> None:
    d = _dash(make_dash, key)
    _store(d, key)
    answer = d.post_form(_crm(d) + "/disconnect", {}, page=_crm(d))
    assert answer.status_code == 303
    assert "Not connected." in d.client.get(_crm(d)).text


def _from_network() -> SalesforceError:
    """A Salesforce error raised ``from None`` over a refused connection, as the OAuth
    token request raises it (its context keeps the cause)."""
    try:
        try:
            raise requests.ConnectionError("refused")
        except requests.ConnectionError:
            raise SalesforceError(
                "cannot reach Salesforce at https://login.salesforce.com"
            ) from None
    except SalesforceError as error:
        return error


@pytest.mark.parametrize(
    ("raised", "hint"),
    [
        (
            SalesforceUnreadable("Salesforce could not be reached: connection refused"),
            "Check that this service can reach the org",
        ),
        (
            AuthenticationError("Salesforce refused the session: INVALID_SESSION_ID"),
            "Reconnect to Salesforce above",
        ),
        (RuntimeError("a bug"), "the service log has the details"),
        (None, "Fix each problem in Salesforce Setup"),
        (_from_network(), "Check that this service can reach the org"),
    ],
)
def test_a_failed_refresh_says_what_to_do_about_what_failed(
    make_dash: MakeDash,
    key: bytes,
    raised: Exception | None,
    hint: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hint under a failed Refresh Webhook follows what failed: the network, the
    login, a bug, or problems Salesforce named (a preflight: fixed in Setup); the step
    it failed at is marked, and a raised error is in the service log too."""
    d = _dash(make_dash, key)
    _store(d, key)

    def work(progress: Any) -> JobOutcome:
        progress.step("preflight")
        if raised is not None:
            raise raised
        return JobOutcome(False, {"outcome": "failed"}, ("Setup › Users: no integration user",))

    caplog.set_level("WARNING", logger="agent_provision")
    job = run_job(start_job(d.engine, d.org, JobKind.REFRESH_WEBHOOK), work)
    page = d.client.get(_crm(d)).text
    assert re.search(
        r"Preflight: checking the org[^<]*<time[^>]*>[^<]*</time> <strong>failed here</strong>",
        page,
    )
    if isinstance(raised, SalesforceError):
        logged = [r.getMessage() for r in caplog.records]
        assert (
            f"job {job.id} (refresh-webhook) of organization {d.org} failed: {raised.message}"
            in logged
        )
    status = _first_status(page)
    assert "Failed" in status and hint in status
    others = {
        "Check that this service can reach the org",
        "Reconnect to Salesforce above",
        "the service log has the details",
        "Fix each problem in Salesforce Setup",
    } - {hint}
    assert not [other for other in others if other in status]


def test_a_refused_login_without_the_connect_form_names_the_command(
    make_dash: MakeDash, key: bytes
) -> None:
    """No External Client App configured: no Connect form on the page, so the hint names
    ``org connect`` instead of pointing at a form that is not there."""
    d = make_dash(secret_key=key.decode())
    d.sign_in()
    _store(d, key)

    def work(progress: Any) -> JobOutcome:
        raise AuthenticationError("Salesforce refused the session: INVALID_SESSION_ID")

    run_job(start_job(d.engine, d.org, JobKind.REFRESH_WEBHOOK), work)
    page = d.client.get(_crm(d)).text
    status = _first_status(page)
    assert f"agent-provision org connect {d.org}" in status
    assert "above" not in status
    assert "This connection was stored from the command line" in page


def test_an_interrupted_refresh_says_the_process_ended(make_dash: MakeDash, key: bytes) -> None:
    """A Refresh whose worker died (its lease ran out) reads as failed with the deploy it
    had submitted, not as problems to fix in Setup."""
    d = _dash(make_dash, key)
    _store(d, key)
    crashed = start_job(d.engine, d.org, JobKind.REFRESH_WEBHOOK, clock=d.clock)
    crashed.step("waiting for Salesforce")
    crashed.deploy_id("0Af000000000009AAA")
    d.clock.advance(seconds=61)  # nobody renewed the 60 s lease
    status = _first_status(d.client.get(_crm(d)).text)
    assert "Failed" in status and "ended before it finished" in status
    assert "deploy 0Af000000000009AAA was submitted" in status
    assert "What to fix" not in status and "Fix each problem" not in status
    assert "<strong>stopped here</strong>" in d.client.get(_crm(d)).text
