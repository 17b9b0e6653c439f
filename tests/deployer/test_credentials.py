"""Credential kinds and their order (CONTRACT section 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.credentials import login, resolve_credentials
from sf_metadata.errors import CredentialsError

NONE: dict[str, str | None] = {}


def test_existing_session_wins(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("k")
    creds = resolve_credentials(
        {
            "instance_url": "https://acme.my.salesforce.com",
            "access_token": "tok",
            "username": "u@x.com",
            "consumer_key": "ck",
            "private_key_file": str(key),
        },
        {},
    )
    assert creds.kind == "session"
    assert not creds.refreshable


def test_environment_fills_absent_flags(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("k")
    creds = resolve_credentials(
        {"username": "u@x.com"},
        {"SF_CONSUMER_KEY": "ck", "SF_PRIVATE_KEY_FILE": str(key), "SF_DOMAIN": "test"},
    )
    assert (creds.kind, creds.domain, creds.refreshable) == ("jwt", "test", True)


def test_client_credentials_need_my_domain() -> None:
    creds = resolve_credentials(
        {"consumer_key": "ck", "consumer_secret": "cs", "domain": "acme.my"}, {}
    )
    assert creds.kind == "client-credentials"
    with pytest.raises(CredentialsError, match="My Domain"):
        resolve_credentials({"consumer_key": "ck", "consumer_secret": "cs"}, {})


def test_soap_login_last_and_retired_from_65() -> None:
    creds = resolve_credentials(
        {"username": "u@x.com", "password": "pw", "security_token": "st"}, {}
    )
    assert creds.kind == "soap-login"
    with pytest.raises(CredentialsError, match="65.0"):
        login(creds, api_version="65.0")


def test_unreadable_key_file_and_nothing_complete() -> None:
    with pytest.raises(CredentialsError, match="cannot read the private key file"):
        resolve_credentials(
            {"username": "u", "consumer_key": "c", "private_key_file": "/nonexistent/key.pem"}, {}
        )
    with pytest.raises(CredentialsError, match="no complete Salesforce credentials"):
        resolve_credentials(NONE, {})


@pytest.mark.parametrize(
    ("given", "needs"),
    [
        (
            {"username": "u", "consumer_key": "c"},
            "JWT bearer also needs the private key file (",
        ),
        (
            {"instance_url": "https://a.my.salesforce.com"},
            "an existing session also needs the access token (",
        ),
        (
            {"consumer_key": "c"},
            "client credentials also needs the consumer secret",
        ),
        (
            {"username": "u", "password": "p"},
            "SOAP login also needs the security token (",
        ),
        (
            {"username": "u"},
            "JWT bearer also needs the consumer key and the private key file",
        ),
    ],
)
def test_partial_credentials_name_the_missing_piece(
    given: dict[str, str | None], needs: str
) -> None:
    with pytest.raises(CredentialsError) as raised:
        resolve_credentials(given, {})
    assert str(raised.value).startswith(needs)


def test_repr_hides_secrets() -> None:
    creds = resolve_credentials(
        {"username": "u@x.com", "password": "pw-secret", "security_token": "st-secret"}, {}
    )
    text = repr(creds) + creds.describe()
    assert "pw-secret" not in text and "st-secret" not in text
    session = resolve_credentials(
        {"instance_url": "https://a.my.salesforce.com", "access_token": "tok-secret"}, {}
    )
    assert "tok-secret" not in repr(session) + session.describe()
