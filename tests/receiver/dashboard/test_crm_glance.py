"""The CRM page's "Is the webhook working?" card (receiver.dashboard.crm): a request
refused for its token is the last rejection; the deployed endpoint is the one the last
deploy put in the Outbound Message, flagged when it is not the current one; a flash is
never the page's first ``status`` element."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

from sqlmodel import select

from deployer.kinds import DeploymentKind, DeploymentOutcome
from deployer.package import Trigger
from receiver.db import transaction
from receiver.deployments import record_deployment
from receiver.models import DeploymentCreate, Organization
from receiver.organizations import rotate_token, update_organization, webhook_path
from receiver.webhook_refusals import WebhookRefusal
from tests.factories import make_notification, make_outbound_message
from tests.receiver.dashboard._harness import Dash


def _crm(d: Dash, **params: str) -> str:
    response = d.client.get(f"/organizations/{d.org}/settings/crm", params=params)
    assert response.status_code == 200
    return response.text


def _glance(html: str, term: str) -> str:
    match = re.search(rf"<dt[^>]*>{term}</dt>\s*<dd>(.*?)</dd>", html, re.S)
    assert match is not None, term
    return unescape(match.group(1))


def _post(d: Dash, token: str | None) -> int:
    body = make_outbound_message([make_notification()], organization_id=d.sf_org)
    params = {"token": token} if token is not None else {}
    return int(
        d.client.post(
            webhook_path(d.org), params=params, content=body, headers={"content-type": "text/xml"}
        ).status_code
    )


def test_a_wrong_token_is_the_last_rejection(dash: Dash) -> None:
    dash.sign_in()
    assert _post(dash, "not-the-token") == 401
    rejection = _glance(_crm(dash), "Last rejection")
    assert 'datetime="2026-11-29T12:00:00Z"' in rejection
    assert "token is wrong (401)" in rejection
    assert "not-the-token" not in _crm(dash) and dash.token not in _crm(dash)
    dash.clock.advance(minutes=5)
    assert _post(dash, None) == 401
    rejection = _glance(_crm(dash), "Last rejection")
    assert 'datetime="2026-11-29T12:05:00Z"' in rejection and "token is missing" in rejection


def test_a_flood_of_wrong_tokens_is_one_write_a_minute(dash: Dash) -> None:
    for _ in range(5):
        assert _post(dash, "wrong") == 401
        dash.clock.advance(seconds=10)
    with transaction(dash.engine, read_only=True) as session:
        rows = session.exec(select(WebhookRefusal)).all()
    assert [r.last_at for r in rows] == [datetime(2026, 11, 29, 12, 0, tzinfo=UTC)]
    dash.clock.advance(seconds=20)
    assert _post(dash, "wrong") == 401
    with transaction(dash.engine, read_only=True) as session:
        (row,) = session.exec(select(WebhookRefusal)).all()
    assert row.last_at == datetime(2026, 11, 29, 12, 1, 10, tzinfo=UTC)


def test_an_unknown_organization_records_nothing(dash: Dash) -> None:
    body = make_outbound_message([make_notification()], organization_id=dash.sf_org)
    response = dash.client.post(webhook_path("no-such-org"), params={"token": "x"}, content=body)
    assert response.status_code == 404
    with transaction(dash.engine, read_only=True) as session:
        assert session.exec(select(WebhookRefusal)).all() == []


def test_a_rejected_message_newer_than_a_refusal_is_shown(dash: Dash) -> None:
    dash.sign_in()
    assert _post(dash, "wrong") == 401
    dash.clock.advance(minutes=1)
    other = make_outbound_message([make_notification()], organization_id="00D000000000009EAA")
    dash.client.post(
        webhook_path(dash.org),
        params={"token": dash.token},
        content=other,
        headers={"content-type": "text/xml"},
    )
    assert "is not the Salesforce org registered" in _glance(_crm(dash), "Last rejection")


def _deployed(d: Dash, endpoint: str | None, token_sha256: str | None) -> None:
    with transaction(d.engine) as session:
        record_deployment(
            session,
            DeploymentCreate(
                organization_id=d.org,
                kind=DeploymentKind.DEPLOY,
                trigger=Trigger.FLOW,
                api_version="62.0",
                components=[],
                deploy_id="0Af000000000001",
                outcome=DeploymentOutcome.SUCCEEDED,
                problems=[],
            ),
            now=datetime(2026, 11, 29, 11, 0, tzinfo=UTC),
            endpoint=endpoint,
            token_sha256=token_sha256,
        )


def _org(d: Dash) -> Organization:
    with transaction(d.engine, read_only=True) as session:
        org = session.get(Organization, d.org)
        assert org is not None
        return org


def test_the_deployed_endpoint_is_shown_and_matches(dash: Dash) -> None:
    dash.sign_in()
    org = _org(dash)
    current = f"{org.base_url}{webhook_path(dash.org)}"
    _deployed(dash, current, org.token_hash)
    html = _crm(dash)
    assert f"<code>{current}?token=…</code>" in _glance(html, "Deployed endpoint")
    assert 'role="alert"' not in _glance(html, "Deployed endpoint")


def test_a_deployed_endpoint_with_another_base_url_is_flagged(dash: Dash) -> None:
    dash.sign_in()
    org = _org(dash)
    old = f"{org.base_url}{webhook_path(dash.org)}"
    _deployed(dash, old, org.token_hash)
    with transaction(dash.engine) as session:
        update_organization(session, name=dash.org, base_url="https://hooks.example.com")
    deployed = _glance(_crm(dash), "Deployed endpoint")
    assert f"<code>{old}?token=…</code>" in deployed
    assert "another address than this service's current webhook URL" in deployed
    assert "https://hooks.example.com" in _glance(_crm(dash), "Current endpoint")


def test_a_deployed_endpoint_with_a_rotated_token_is_flagged(dash: Dash, key: bytes) -> None:
    dash.sign_in()
    org = _org(dash)
    _deployed(dash, f"{org.base_url}{webhook_path(dash.org)}", org.token_hash)
    with transaction(dash.engine) as session:
        rotate_token(session, name=dash.org, key=key)
    assert "carries an old token" in _glance(_crm(dash), "Deployed endpoint")


def test_a_deploy_recorded_before_endpoints_were_kept_says_so(dash: Dash) -> None:
    dash.sign_in()
    _deployed(dash, None, None)
    assert "not recorded" in _glance(_crm(dash), "Deployed endpoint")


def test_a_flash_on_the_crm_page_is_not_a_status_element(dash: Dash) -> None:
    dash.sign_in()
    dash.vouch(f"/organizations/{dash.org}/settings/crm?flash=enabled")
    html = _crm(dash, flash="enabled")
    assert "Agent Auto Provision is now Enabled." in html
    assert 'role="status"' not in html.split("Agent Auto Provision is now Enabled.")[0][-200:]
    dash.vouch(f"/organizations/{dash.org}/users?flash=enabled")
    users = dash.client.get(f"/organizations/{dash.org}/users", params={"flash": "enabled"}).text
    assert '<p class="flash" role="status">Agent Auto Provision is now Enabled.</p>' in users


def test_a_tokenless_probe_does_not_hide_a_rejected_message(dash: Dash) -> None:
    """Attack finding 5: both kinds are shown, newest first."""
    dash.sign_in()
    other = make_outbound_message([make_notification()], organization_id="00D000000000009EAA")
    dash.client.post(
        webhook_path(dash.org),
        params={"token": dash.token},
        content=other,
        headers={"content-type": "text/xml"},
    )
    dash.clock.advance(minutes=2)
    assert _post(dash, None) == 401
    rejection = _glance(_crm(dash), "Last rejection")
    assert rejection.index("token is missing") < rejection.index("is not the Salesforce org")
    assert "(request refused)" in rejection and "(message rejected)" in rejection


def test_a_replay_is_not_the_last_message_from_salesforce(dash: Dash) -> None:
    from receiver.replay_batch import ReplayScope, replay_failed

    dash.sign_in()
    dash.post_message(make_notification(IsActive=None))
    before = _crm(dash)
    dash.clock.advance(minutes=30)
    done = replay_failed(dash.engine, organization=dash.org, scope=ReplayScope(), now=dash.clock())
    assert done.actions == {"failed": 1}
    after = _crm(dash)
    assert _glance(after, "Last message") == _glance(before, "Last message")
    assert _glance(after, "Last notification") == _glance(before, "Last notification")


def test_the_last_notification_is_coloured_as_in_the_log(dash: Dash) -> None:
    """Newcomer finding: a duplicate was a green pill here and a grey one in the log."""
    dash.sign_in()
    message = make_notification()
    dash.post_message(message)
    dash.post_message(message)  # the same notification again: a duplicate
    assert '<span class="pill off">duplicate</span>' in _crm(dash)
    log = dash.client.get(f"/organizations/{dash.org}/provisioning-log").text
    assert '<span class="pill off">duplicate</span>' in log
    assert '<span class="pill ok">created</span>' in log


def test_the_last_notification_names_its_user_as_the_log_does(dash: Dash) -> None:
    """Newcomer finding: it showed the user id alone."""
    dash.sign_in()
    dash.post_message(make_notification(Name="Grace <b>Hopper</b>"))
    shown = _glance(_crm(dash), "Last notification")
    # in a <bdi>: a right-to-left Name does not reorder the id beside it (attack finding)
    assert re.search(r"><bdi>Grace <b>Hopper</b></bdi>, 005\w{15}</a>\)$", shown)
    assert "<b>Hopper" not in _crm(dash)  # the Name stays text
    dash.post_message(make_notification(IsActive=None, Name="Not Provisioned"))
    assert "<bdi>Not Provisioned</bdi>, 005" in _glance(_crm(dash), "Last notification")
