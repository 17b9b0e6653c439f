"""``agent-provision org connect | disconnect`` and ``org show``'s ``salesforceConnection``
(CONTRACT section 7), with each credential kind against the ``connect_*`` cassettes
(``tests/receiver/connection_cassette_builder.py``), and the stored connection used by
``check`` when no flag or variable gives credentials."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import Session

from receiver.db import make_engine
from receiver.salesforce_connection import SalesforceConnection, read_secrets, save_connection
from receiver.secrets import load_key
from tests.deployer._harness import (
    CLIENT_CREDENTIAL_ARGS,
    INTEGRATION_USER,
    ORG,
    SESSION_ARGS,
    Harness,
)
from tests.deployer._vcr import CASSETTES, HOST, make_vcr

PASSWORD_ARGS = [
    "--username",
    "admin@acme.example.com",
    "--password",
    "test-password-1",
    "--security-token",
    "test-security-token",
]
SECRETS = (
    "test-access-token",
    "test-consumer-secret",
    "test-password-1",
    "test-security-token",
    "stored-refresh-token-1",
)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    h = Harness(tmp_path)
    h.add_org()
    return h


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "server.key"
    path.write_bytes(pem)
    return path


def _store_bytes(harness: Harness) -> bytes:
    return b"".join(p.read_bytes() for p in harness.tmp_path.glob("store.db*") if p.is_file())


def _assert_no_secret(harness: Harness, *texts: str, extra: tuple[str, ...] = ()) -> None:
    store = _store_bytes(harness)
    for secret in (*SECRETS, *extra):
        assert secret.encode() not in store, secret
        for text in texts:
            assert secret not in text, secret


def _show(harness: Harness) -> dict[str, object]:
    result = harness.invoke(["org", "show", ORG, "--json"])
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("cassette", "kind", "args"),
    [
        ("connect_session", "session", SESSION_ARGS),
        ("connect_client_credentials", "client-credentials", CLIENT_CREDENTIAL_ARGS),
        ("connect_soap_login", "soap-login", PASSWORD_ARGS),
    ],
)
def test_connect_stores_each_kind_encrypted(
    harness: Harness, cassette: str, kind: str, args: list[str]
) -> None:
    assert _show(harness)["salesforceConnection"] is None
    result = harness.run(cassette, ["org", "connect", ORG, *args, "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["salesforceConnection"]["kind"] == kind
    assert out["salesforceOrgId"] == "00D000000000001EAA"
    connection = _show(harness)["salesforceConnection"]
    assert isinstance(connection, dict)
    assert connection["instanceUrl"] == f"https://{HOST}"
    assert connection["kind"] == kind
    assert connection["username"] == "admin@acme.example.com"
    assert str(connection["connectedAt"]).endswith("Z")
    _assert_no_secret(harness, result.output)


def test_connect_jwt_stores_the_private_key_encrypted(harness: Harness, key_file: Path) -> None:
    args = [
        "--username",
        "admin@acme.example.com",
        "--consumer-key",
        "test-consumer-key",
        "--private-key-file",
        str(key_file),
    ]
    result = harness.run("connect_jwt", ["org", "connect", ORG, *args])
    assert result.exit_code == 0, result.stderr
    assert "connected acme to the production org 00D000000000001EAA" in result.stdout
    pem_line = key_file.read_text().splitlines()[1]
    _assert_no_secret(harness, result.output, extra=(pem_line,))
    key_file.unlink()  # the stored connection no longer needs the file
    engine = make_engine(harness.db_url)
    try:
        with Session(engine) as session:
            row = session.get(SalesforceConnection, ORG)
            assert row is not None and row.kind == "jwt"
            secrets = read_secrets(row, load_key(harness.db_url))
            assert pem_line in secrets["private_key"]
    finally:
        engine.dispose()


def test_connect_to_another_org_is_refused_and_keeps_the_stored_one(harness: Harness) -> None:
    first = harness.run("connect_session", ["org", "connect", ORG, *SESSION_ARGS])
    assert first.exit_code == 0, first.stderr
    before = _show(harness)["salesforceConnection"]
    refused = harness.run("connect_other_org", ["org", "connect", ORG, *SESSION_ARGS])
    assert refused.exit_code == 5
    assert "not the Salesforce org 00D000000000001EAA" in refused.stderr
    assert _show(harness)["salesforceConnection"] == before


def test_connect_without_credentials_is_a_usage_error(harness: Harness) -> None:
    result = harness.run("no_such_cassette", ["org", "connect", ORG], all_played=False)
    assert result.exit_code == 2
    assert "--access-token" in result.stderr
    assert _show(harness)["salesforceConnection"] is None


def test_check_uses_the_stored_connection_when_no_flag_gives_one(harness: Harness) -> None:
    connect = harness.run("connect_session", ["org", "connect", ORG, *SESSION_ARGS])
    assert connect.exit_code == 0, connect.stderr
    result = harness.run(
        "check_ok", ["check", ORG, "--integration-user", INTEGRATION_USER, "--json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def _store_oauth(harness: Harness, *, refresh: str = "5Aep861FakeRefreshToken") -> None:
    engine = make_engine(harness.db_url)
    try:
        with Session(engine) as session, session.begin():
            save_connection(
                session,
                organization=ORG,
                kind="oauth",
                instance_url=f"https://{HOST}",
                salesforce_org_id="00D000000000001EAA",
                is_sandbox=False,
                username="admin@acme.example.com",
                user_id="005000000000001AAA",
                login_url="https://login.salesforce.com",
                secrets={"access_token": "stale-access-token", "refresh_token": refresh},
                key=load_key(harness.db_url),
                now=datetime(2026, 11, 1, tzinfo=UTC),
            )
    finally:
        engine.dispose()


def _stored(harness: Harness) -> tuple[SalesforceConnection, dict[str, str]]:
    engine = make_engine(harness.db_url)
    try:
        with Session(engine) as session:
            row = session.get(SalesforceConnection, ORG)
            assert row is not None
            return row, read_secrets(row, load_key(harness.db_url))
    finally:
        engine.dispose()


def test_expired_oauth_token_is_refreshed_and_the_rotated_token_saved(harness: Harness) -> None:
    _store_oauth(harness)
    result = harness.run(
        "stored_oauth_check", ["check", ORG, "--integration-user", INTEGRATION_USER]
    )
    assert result.exit_code == 0, result.stderr
    row, secrets = _stored(harness)
    # the cassette's rotated refresh token (scrubbed to **Elided** on disk) replaced ours
    assert secrets["refresh_token"] == "**Elided**"
    assert secrets["access_token"] != "stale-access-token"
    assert row.refreshed_at is not None and row.status == "connected"


def test_revoked_refresh_token_asks_to_reconnect(harness: Harness) -> None:
    _store_oauth(harness)
    result = harness.run(
        "stored_oauth_revoked", ["check", ORG, "--integration-user", INTEGRATION_USER]
    )
    assert result.exit_code == 3
    assert "invalid_grant" in result.stderr and "reconnect" in result.stderr
    row, secrets = _stored(harness)
    assert row.status == "reconnect" and "invalid_grant" in (row.status_reason or "")
    assert secrets["refresh_token"] == "5Aep861FakeRefreshToken"  # nothing half-written
    assert "5Aep861FakeRefreshToken" not in result.output


def test_disconnect_revokes_the_oauth_token_and_forgets(harness: Harness) -> None:
    _store_oauth(harness)
    result = harness.run("disconnect_oauth", ["org", "disconnect", ORG])
    assert result.exit_code == 0, result.stderr
    assert "disconnected acme" in result.stdout
    assert _show(harness)["salesforceConnection"] is None
    again = harness.run("no_such_cassette", ["org", "disconnect", ORG], all_played=False)
    assert again.exit_code == 0 and "nothing to forget" in again.stdout


def test_no_cassette_holds_a_secret_of_these_tests() -> None:
    for path in CASSETTES.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        for secret in (*SECRETS, "5Aep861Fake", "FakeConsumerSecret123", "FakePassword1"):
            assert secret not in text, (path.name, secret)


def _store_session(harness: Harness, username: str) -> None:
    engine = make_engine(harness.db_url)
    try:
        with Session(engine) as session, session.begin():
            save_connection(
                session,
                organization=ORG,
                kind="session",
                instance_url=f"https://{HOST}",
                salesforce_org_id="00D000000000001EAA",
                is_sandbox=False,
                username=username,
                user_id=None,
                login_url=f"https://{HOST}",
                secrets={"access_token": "test-access-token"},
                key=load_key(harness.db_url),
                now=datetime(2026, 11, 1, tzinfo=UTC),
            )
    finally:
        engine.dispose()


def _flip(harness: Harness) -> Any:
    from receiver.feature_switch import FeatureFlip
    from receiver.settings import Settings

    settings = Settings(database_url=harness.db_url, deploy_poll_seconds=0.01)
    return FeatureFlip(ORG, make_engine(harness.db_url), settings, "cli", datetime.now(UTC), False)


def test_the_on_enable_action_installs_a_webhook_never_deployed(harness: Harness) -> None:
    """``org enable`` runs it (with the first reconcile, tested with reconcile)."""
    from receiver.webhook_install import install_if_never_deployed

    _store_session(harness, INTEGRATION_USER)
    flip = _flip(harness)
    with make_vcr().use_cassette("deploy_flow.yaml") as cassette:
        line = install_if_never_deployed(flip)
    assert cassette.all_played
    assert line is not None and line.startswith("webhook install: deployed")
    [row] = harness.deployments()
    assert row["trigger"] == "flow" and row["outcome"] == "succeeded"
    assert install_if_never_deployed(flip) is None  # deployed before: nothing sent


def test_the_on_enable_action_without_a_connection_deploys_nothing(harness: Harness) -> None:
    from receiver.webhook_install import install_if_never_deployed

    assert install_if_never_deployed(_flip(harness)) is None
    assert harness.deployments() == []


def test_a_failed_install_says_how_many_problems_it_did_not_print(harness: Harness) -> None:
    """Newcomer finding: `org enable` printed one preflight problem of six, and no more."""
    from receiver.webhook_install import install_if_never_deployed

    _store_session(harness, INTEGRATION_USER)
    with make_vcr().use_cassette("preflight_missing_permission.yaml") as cassette:
        line = install_if_never_deployed(_flip(harness))
    assert cassette.all_played
    assert line == (
        'webhook install failed: The deploying user lacks "Customize Application" '
        "(PermissionsCustomizeApplication): grant it in Setup > Users > Profiles or "
        "Permission Sets (and 1 more on the CRM page)"
    )
