"""The stored OAuth connection's refresh (``receiver/salesforce_login.py``): one refresh per
organization at a time, the rotated token saved with it, a refused one marked."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from sqlalchemy.engine import Engine

from receiver.db import make_engine, transaction
from receiver.salesforce_connection import SalesforceConnection, read_secrets, save_connection
from receiver.salesforce_login import refresh_stored_token
from sf_metadata.errors import AuthenticationError, SalesforceError
from tests.conftest import MakeOrganization


class FakeTokenEndpoint:
    """A ``requests.Session`` stand-in for ``POST /services/oauth2/token``: each call
    rotates the refresh token; ``gate`` holds the answer until released."""

    def __init__(self, *, status: int = 200, error: Exception | None = None) -> None:
        self.calls: list[dict[str, str]] = []
        self.instance_url = "https://acme.my.salesforce.com"
        self.status = status
        self.error = error
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def post(self, url: str, data: dict[str, str], timeout: float) -> requests.Response:
        self.calls.append(dict(data))
        self.entered.set()
        assert self.gate.wait(timeout=10)
        if self.error is not None:
            raise self.error
        n = len(self.calls)
        body: dict[str, Any] = (
            {
                "access_token": f"access-{n}",
                "refresh_token": f"refresh-{n}",
                "instance_url": self.instance_url,
            }
            if self.status == 200
            else {"error": "invalid_grant", "error_description": "token revoked"}
        )
        response = requests.Response()
        response.status_code = self.status
        response._content = json.dumps(body).encode()
        return response


@pytest.fixture
def org(engine: Engine, make_organization: MakeOrganization, key: bytes) -> str:
    with transaction(engine) as session:
        organization, _ = make_organization(session, name="acme")
        save_connection(
            session,
            organization=organization.id,
            kind="oauth",
            instance_url="https://acme.my.salesforce.com",
            salesforce_org_id=organization.salesforce_org_id,
            is_sandbox=False,
            username="admin@acme.example.com",
            user_id=None,
            login_url="https://login.salesforce.com",
            secrets={"access_token": "access-0", "refresh_token": "refresh-0"},
            key=key,
            now=datetime(2026, 11, 1, tzinfo=UTC),
        )
    return organization.id


def _secrets(engine: Engine, org: str, key: bytes) -> tuple[SalesforceConnection, dict[str, str]]:
    with transaction(engine, read_only=True) as session:
        row = session.get(SalesforceConnection, org)
        assert row is not None
        return row, read_secrets(row, key)


def _refresh(engine: Engine, org: str, key: bytes, http: Any, stale: str | None) -> str:
    access, _ = refresh_stored_token(
        engine, key, org, stale_access_token=stale, client_id="cid", client_secret=None, http=http
    )
    return access


def test_rotation_is_saved_and_the_next_refresh_uses_the_new_token(
    engine: Engine, org: str, key: bytes
) -> None:
    http = FakeTokenEndpoint()
    assert _refresh(engine, org, key, http, "access-0") == "access-1"
    assert _secrets(engine, org, key)[1] == {
        "access_token": "access-1",
        "refresh_token": "refresh-1",
    }
    assert _refresh(engine, org, key, http, "access-1") == "access-2"
    assert [c["refresh_token"] for c in http.calls] == ["refresh-0", "refresh-1"]
    assert http.calls[0]["grant_type"] == "refresh_token" and http.calls[0]["client_id"] == "cid"


@pytest.mark.parametrize(
    ("answered", "kept"),
    [
        ("https://acme2.my.salesforce.com", "https://acme2.my.salesforce.com"),  # a moved org
        ("https://evil.example", "https://acme.my.salesforce.com"),
        ("http://acme.my.salesforce.com", "https://acme.my.salesforce.com"),  # not https
        ("https://evil.example\\.my.salesforce.com", "https://acme.my.salesforce.com"),
    ],
)
def test_a_refresh_keeps_its_token_on_salesforce_hosts(
    engine: Engine, org: str, key: bytes, answered: str, kept: str
) -> None:
    fake = FakeTokenEndpoint()
    fake.instance_url = answered
    http: Any = fake
    access, instance_url = refresh_stored_token(
        engine,
        key,
        org,
        stale_access_token="access-0",
        client_id="cid",
        client_secret=None,
        http=http,
    )
    assert access == "access-1" and instance_url == kept
    assert _secrets(engine, org, key)[0].instance_url == kept


def test_two_racing_refreshes_send_one_request(
    engine: Engine, database_url: str, org: str, key: bytes
) -> None:
    http = FakeTokenEndpoint()
    http.gate.clear()
    other = make_engine(database_url)  # a second worker
    results: list[str] = []

    def worker(eng: Engine) -> None:
        results.append(_refresh(eng, org, key, http, "access-0"))

    try:
        first = threading.Thread(target=worker, args=(engine,))
        first.start()
        assert http.entered.wait(timeout=10)  # the first holds the row while it refreshes
        second = threading.Thread(target=worker, args=(other,))
        second.start()
        http.gate.set()
        first.join(timeout=30)
        second.join(timeout=30)
    finally:
        other.dispose()
    assert len(http.calls) == 1  # the second saw the fresh token and sent nothing
    assert results == ["access-1", "access-1"]
    assert _secrets(engine, org, key)[1]["refresh_token"] == "refresh-1"


def test_a_refused_refresh_marks_reconnect_and_keeps_the_token(
    engine: Engine, org: str, key: bytes
) -> None:
    with pytest.raises(AuthenticationError, match="invalid_grant.*reconnect"):
        _refresh(engine, org, key, FakeTokenEndpoint(status=400), "access-0")
    row, secrets = _secrets(engine, org, key)
    assert row.status == "reconnect" and "token revoked" in (row.status_reason or "")
    assert secrets["refresh_token"] == "refresh-0"


def test_unreachable_login_url_changes_nothing(engine: Engine, org: str, key: bytes) -> None:
    http = FakeTokenEndpoint(error=requests.ConnectionError("refused"))
    with pytest.raises(SalesforceError, match="cannot reach Salesforce"):
        _refresh(engine, org, key, http, "access-0")
    row, secrets = _secrets(engine, org, key)
    assert row.status == "connected" and secrets["refresh_token"] == "refresh-0"
