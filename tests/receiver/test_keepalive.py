"""Keep-alive of stored OAuth connections (``receiver/keepalive.py``) against the
``stored_oauth_keepalive`` cassette."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine

from receiver.db import transaction
from receiver.jobs import JobKind, latest_jobs
from receiver.keepalive import due_for_keep_alive, keep_alive
from receiver.salesforce_connection import SalesforceConnection, read_secrets, save_connection
from tests.conftest import MakeOrganization
from tests.deployer._vcr import HOST, make_vcr

CONNECTED_AT = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def stored(engine: Engine, make_organization: MakeOrganization, key: bytes) -> str:
    with transaction(engine) as session:
        org, _ = make_organization(session, name="acme")
        save_connection(
            session,
            organization=org.id,
            kind="oauth",
            instance_url=f"https://{HOST}",
            salesforce_org_id=org.salesforce_org_id,
            is_sandbox=False,
            username="admin@acme.example.com",
            user_id="005000000000001AAA",
            login_url="https://login.salesforce.com",
            secrets={"access_token": "a", "refresh_token": "5Aep861FakeRefreshToken"},
            key=key,
            now=CONNECTED_AT,
        )
    return org.id


def test_only_connections_idle_for_25_days_are_due(engine: Engine, stored: str) -> None:
    assert due_for_keep_alive(engine, CONNECTED_AT + timedelta(days=24, hours=23)) == []
    assert due_for_keep_alive(engine, CONNECTED_AT + timedelta(days=25)) == [stored]


def test_keep_alive_refreshes_once_and_saves_the_rotated_token(
    engine: Engine, stored: str, key: bytes
) -> None:
    now = CONNECTED_AT + timedelta(days=26)
    with make_vcr().use_cassette("stored_oauth_keepalive.yaml") as cassette:
        refreshed = keep_alive(
            engine,
            now,
            key=key,
            client_id="3MVG9FakeClientId",
            client_secret=None,
            clock=lambda: now,
        )
    assert refreshed == [stored] and cassette.all_played
    with transaction(engine, read_only=True) as session:
        row = session.get(SalesforceConnection, stored)
        assert row is not None
        assert read_secrets(row, key)["refresh_token"] == "**Elided**"  # the rotated one
        assert row.last_used_at == now
        [job] = latest_jobs(session, stored, JobKind.KEEP_ALIVE)
    assert job.steps[0][0] == "refreshing the token"
    assert due_for_keep_alive(engine, now + timedelta(days=1)) == []


def test_secrets_need_the_stores_key(engine: Engine, stored: str) -> None:
    with transaction(engine, read_only=True) as session:
        row = session.get(SalesforceConnection, stored)
        assert row is not None
        assert "5Aep861Fake" not in row.secrets_encrypted
        with pytest.raises(Exception, match="cannot be decrypted"):
            read_secrets(row, Fernet.generate_key())
