"""The CRM page in a real headless Chromium against a live ``serve`` (issue 9 "Done
when"): Connect to Salesforce through the OAuth web server flow against a local fake
authorization server (``tests/receiver/fake_salesforce_auth.py``), then Refresh against a
cassette-backed fake Salesforce over TLS (``tests/browser/_cassette_salesforce.py``): a
success, a preflight failure, a component failure, and the history. Screens at 1366x768."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser._cassette_salesforce import CassetteSalesforce, self_signed
from tests.browser.conftest import ORG_ID, PASSWORD
from tests.in_process_cli import run_cli
from tests.receiver._live import serve_in_thread
from tests.receiver.fake_salesforce_auth import FakeAuthServer
from tests.serve_process import free_port, serve_process
from tests.sqlite_template import copy_migrated_store


@dataclass
class CrmLive:
    url: str
    auth: FakeAuthServer
    salesforce: CassetteSalesforce
    log: Path


@pytest.fixture
def crm_live(tmp_path: Path) -> Iterator[CrmLive]:
    cert, key = self_signed(tmp_path)
    salesforce = CassetteSalesforce()
    auth = FakeAuthServer(username="integration@acme.example.com")
    with (
        serve_in_thread(salesforce.app(), ssl=(cert, key)) as sf_url,
        serve_in_thread(auth.app()) as auth_url,
    ):
        auth.base_url = auth_url
        auth.instance_url = sf_url
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_PROVISION_", "SF_"))}
        env.update(
            {
                "AGENT_PROVISION_DATABASE_URL": (
                    f"sqlite:///{copy_migrated_store(tmp_path / 'store.db')}"
                ),
                "AGENT_PROVISION_SALESFORCE_CLIENT_ID": auth.client_id,
                "AGENT_PROVISION_SALESFORCE_LOGIN_URLS": auth_url,
                "REQUESTS_CA_BUNDLE": str(cert),
                # the cassettes answer at once: poll and reload at the shortest settings
                "AGENT_PROVISION_DEPLOY_POLL_SECONDS": "0.01",
                "AGENT_PROVISION_DASHBOARD_RELOAD_SECONDS": "1",
            }
        )
        run_cli(
            env,
            "org",
            "add",
            "acme",
            "--salesforce-org-id",
            ORG_ID,
            "--base-url",
            "https://hooks.example.com",
        )
        run_cli(env, "operator", "add", "ops", "--password-stdin", stdin=PASSWORD + "\n")
        log_path = tmp_path / "serve.log"
        with serve_process(env, port, cwd=tmp_path, log_path=log_path):
            yield CrmLive(f"http://127.0.0.1:{port}", auth, salesforce, log_path)


def _shot(page: Any, name: str, shot: Any) -> None:
    shot(page, name)  # in $AGENT_PROVISION_SCREENSHOT_DIR (tests/browser/conftest.py)


def _sign_in(page: Any, live: CrmLive) -> None:
    page.goto(live.url + "/login")
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your organizations")).to_be_visible()


def _refresh_and_wait(page: Any, word: str) -> Any:
    region = page.get_by_role("region", name="Refresh Webhook")
    region.get_by_role("button", name="Refresh").click()
    status = page.get_by_role("status").first
    expect(status).to_contain_text(word, timeout=60_000)
    return status


def test_connect_refresh_success_failures_and_history(
    page: Any, crm_live: CrmLive, shot: Any
) -> None:
    live = crm_live
    _sign_in(page, live)
    page.goto(live.url + "/organizations/acme/settings/crm")
    expect(page.get_by_text("Not connected.")).to_be_visible()
    _shot(page, "01-crm-not-connected", shot)

    page.get_by_label("Environment").select_option(label="My Domain")
    page.get_by_label("My Domain URL").fill(live.auth.base_url)
    page.get_by_role("button", name="Connect to Salesforce").click()
    expect(page.get_by_role("heading", name="Allow Access?")).to_be_visible()
    page.get_by_role("link", name="Allow").click()
    expect(page.get_by_text("Connected to Salesforce.")).to_be_visible()
    expect(page.get_by_text("integration@acme.example.com")).to_be_visible()
    expect(page.get_by_text("OAuth 2.0 web server flow")).to_be_visible()
    _shot(page, "02-crm-connected", shot)

    live.salesforce.load("deploy_flow")
    status = _refresh_and_wait(page, "Succeeded")
    expect(status).to_contain_text("Flow:Agent_Auto_Provision_User_Sync_Flow")
    assert live.salesforce.all_played, live.salesforce.misses
    _shot(page, "03-refresh-succeeded", shot)

    live.salesforce.load("preflight_missing_permission")
    status = _refresh_and_wait(page, "Failed")
    expect(status).to_contain_text("Modify Metadata Through Metadata API Functions")
    _shot(page, "04-refresh-failed-preflight", shot)

    live.salesforce.load("deploy_component_failures_list")
    status = _refresh_and_wait(page, "Failed")
    expect(status).to_contain_text("Flow Agent_Auto_Provision_User_Sync_Flow")
    history = page.get_by_role("table", name="Deployment history")
    expect(history.locator("tbody tr")).to_have_count(3)
    # each run says who pressed Refresh
    expect(history.get_by_role("cell", name="operator:ops", exact=True)).to_have_count(3)
    expect(
        page.get_by_text(re.compile(r"^Started .* UTC by operator:ops; its steps:$"))
    ).to_be_visible()
    _shot(page, "05-refresh-failed-component-and-history", shot)

    secrets = [*live.auth.refresh_tokens, *live.auth.access_tokens]
    html = page.content()
    assert all(s not in html for s in secrets)
    log = live.log.read_text()
    assert all(s not in log for s in secrets)


def test_refused_consent_and_a_replayed_callback_show_an_alert(
    page: Any, crm_live: CrmLive, shot: Any
) -> None:
    live = crm_live
    _sign_in(page, live)
    page.goto(live.url + "/organizations/acme/settings/crm")
    page.get_by_label("Environment").select_option(label="My Domain")
    page.get_by_label("My Domain URL").fill(live.auth.base_url)
    page.get_by_role("button", name="Connect to Salesforce").click()
    page.get_by_role("link", name="Deny").click()
    expect(page.get_by_role("alert")).to_contain_text("access_denied")
    _shot(page, "06-consent-refused", shot)
    page.reload()  # the same callback URL again: the state was used
    expect(page.get_by_role("alert")).to_contain_text("already used")
    page.goto(live.url + "/organizations/acme/settings/crm")
    expect(page.get_by_text("Not connected.")).to_be_visible()

    page.get_by_label("Environment").select_option(label="My Domain")
    page.get_by_label("My Domain URL").fill("https://evil.example.com")
    page.get_by_role("button", name="Connect to Salesforce").click()
    expect(page.get_by_role("alert")).to_contain_text("is not a Salesforce login URL")
    _shot(page, "07-login-url-refused", shot)
