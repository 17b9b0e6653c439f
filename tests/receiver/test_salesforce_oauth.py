"""Connect to Salesforce (``receiver/salesforce_oauth.py``) against a local fake
authorization server on loopback (``tests/receiver/fake_salesforce_auth.py``): PKCE S256,
single-use state, refused consent, another org, a code exchanged twice, login URLs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy.engine import Engine

from receiver.db import transaction
from receiver.salesforce_connection import SalesforceConnection, connection_info, read_secrets
from receiver.salesforce_hosts import accepted_instance_url
from receiver.salesforce_oauth import (
    OAuthRefused,
    accepted_login_url,
    begin,
    code_challenge,
    complete,
    login_url_for,
)
from sf_metadata.errors import UsageError
from tests.conftest import MakeOrganization
from tests.receiver._live import serve_in_thread
from tests.receiver.fake_salesforce_auth import ORG_ID, USERNAME, FakeAuthServer

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REDIRECT = "http://127.0.0.1:8000/oauth/salesforce/callback"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAuthServer]:
    server = FakeAuthServer()
    with serve_in_thread(server.app()) as base:
        server.base_url = base
        yield server


@pytest.fixture
def org(engine: Engine, make_organization: MakeOrganization) -> str:
    with transaction(engine) as session:
        organization, _ = make_organization(session, name="acme", salesforce_org_id=ORG_ID)
    return organization.id


def _begin(engine: Engine, key: bytes, fake: FakeAuthServer, org: str) -> str:
    return begin(
        engine,
        key,
        organization=org,
        login_url=fake.base_url,
        client_id=fake.client_id,
        redirect_uri=REDIRECT,
        operator="ops",
        now=NOW,
    )


def _consent(authorize_url: str, *, allow: bool = True) -> dict[str, str]:
    """What the browser would bring back to the callback: the fake's Allow / Deny link."""
    page = requests.get(authorize_url, timeout=10)
    assert page.status_code == 200, page.text
    links = [part.split('"')[0] for part in page.text.split('href="')[1:]]
    link = links[0 if allow else 1].replace("&amp;", "&")
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def _complete(
    engine: Engine, key: bytes, fake: FakeAuthServer, params: dict[str, str], **kw: object
) -> object:
    return complete(
        engine,
        key,
        params=params,
        client_id=fake.client_id,
        client_secret=None,
        redirect_uri=REDIRECT,
        extra_login_urls=fake.base_url,
        http=requests.Session(),
        now=kw.get("now", NOW),  # type: ignore[arg-type]
    )


def _stored(engine: Engine, org: str) -> SalesforceConnection | None:
    with transaction(engine, read_only=True) as session:
        return session.get(SalesforceConnection, org)


def test_connect_stores_an_oauth_connection_encrypted(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str
) -> None:
    url = _begin(engine, key, fake, org)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["api id refresh_token"]
    params = _consent(url)
    info = _complete(engine, key, fake, params)
    assert info.username == USERNAME and info.kind == "oauth"  # type: ignore[attr-defined]
    row = _stored(engine, org)
    assert row is not None and row.salesforce_org_id == ORG_ID
    secrets = read_secrets(row, key)
    assert secrets["refresh_token"] in fake.refresh_tokens
    assert secrets["refresh_token"] not in row.secrets_encrypted
    assert params["code"] not in row.secrets_encrypted


def test_a_replayed_state_is_refused_and_changes_nothing(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str
) -> None:
    params = _consent(_begin(engine, key, fake, org))
    _complete(engine, key, fake, params)
    before = _stored(engine, org)
    with pytest.raises(OAuthRefused, match="already used"):
        _complete(engine, key, fake, params)
    after = _stored(engine, org)
    assert before is not None and after is not None
    assert after.secrets_encrypted == before.secrets_encrypted


@pytest.mark.parametrize("state", ["", "forged-state-value"])
def test_a_forged_or_missing_state_is_refused(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str, state: str
) -> None:
    params = _consent(_begin(engine, key, fake, org))
    with pytest.raises(OAuthRefused, match="unknown|no state"):
        _complete(engine, key, fake, {**params, "state": state})
    assert _stored(engine, org) is None


def test_refused_consent_stores_nothing(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str
) -> None:
    params = _consent(_begin(engine, key, fake, org), allow=False)
    with pytest.raises(OAuthRefused, match="access_denied.*Nothing was stored"):
        _complete(engine, key, fake, params)
    assert _stored(engine, org) is None


def test_a_code_exchanged_twice_is_refused(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str
) -> None:
    first = _consent(_begin(engine, key, fake, org))
    _complete(engine, key, fake, first)
    second = _begin(engine, key, fake, org)
    state = parse_qs(urlsplit(second).query)["state"][0]
    with pytest.raises(OAuthRefused, match="invalid_grant"):
        _complete(engine, key, fake, {"code": first["code"], "state": state})


def _refused_and_revoked(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str, match: str, **answer: str
) -> None:
    """A sign-in whose token answer has ``answer``'s fields (the fake's attributes) is
    refused with ``match``, stores nothing, and revokes the token once."""
    kept = {name: getattr(fake, name) for name in answer}
    for name, value in answer.items():
        setattr(fake, name, value)
    try:
        params = _consent(_begin(engine, key, fake, org))
        revoked_before = len(fake.revoked)
        with pytest.raises(OAuthRefused, match=match):
            _complete(engine, key, fake, params)
    finally:
        for name, value in kept.items():
            setattr(fake, name, value)
    assert _stored(engine, org) is None  # the token never goes anywhere else
    assert len(fake.revoked) == revoked_before + 1
    assert fake.revoked[-1] not in fake.refresh_tokens  # that token no longer works


def test_another_org_is_refused_and_its_token_revoked(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str
) -> None:
    _refused_and_revoked(
        engine, key, fake, org, "not 00D000000000001EAA.*revoked", org_id="00D000000000002EAA"
    )


@pytest.mark.parametrize(
    "instance_url",
    [
        "https://evil.example",
        "http://orgname.my.salesforce.com",
        "https://orgname.lightning.force.com",
    ],
)
def test_a_token_naming_a_foreign_instance_is_refused_and_revoked(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str, instance_url: str
) -> None:
    _refused_and_revoked(
        engine, key, fake, org, "not a Salesforce host.*revoked", instance_url=instance_url
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Acme.my.salesforce.com/", "https://acme.my.salesforce.com"),
        (
            "https://acme--uat.sandbox.my.salesforce.com",
            "https://acme--uat.sandbox.my.salesforce.com",
        ),
        ("https://na1.salesforce.com", "https://na1.salesforce.com"),
    ],
)
def test_accepted_instance_urls(url: str, expected: str) -> None:
    assert accepted_instance_url(url) == expected


def test_a_listed_host_is_trusted_on_any_port_and_nothing_else_is() -> None:
    extra = "http://127.0.0.1:8071"
    assert accepted_instance_url("https://127.0.0.1:9443", extra) == "https://127.0.0.1:9443"
    with pytest.raises(UsageError, match="not a Salesforce host"):
        accepted_instance_url("http://127.0.0.2:8071", extra)
    with pytest.raises(UsageError, match="not a Salesforce host"):
        accepted_instance_url("https://acme.my.salesforce.com:8443")  # not port 443


def test_an_old_state_is_refused(
    engine: Engine, key: bytes, fake: FakeAuthServer, org: str
) -> None:
    params = _consent(_begin(engine, key, fake, org))
    with pytest.raises(OAuthRefused, match="10 minutes"):
        _complete(engine, key, fake, params, now=NOW + timedelta(minutes=11))
    with transaction(engine, read_only=True) as session:
        assert connection_info(session, org) is None


def test_pkce_challenge_is_s256() -> None:
    # RFC 7636 appendix B
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(
    ("url", "extra", "expected"),
    [
        ("https://login.salesforce.com", "", "https://login.salesforce.com"),
        ("https://test.salesforce.com/", "", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com/x", "", "https://acme.my.salesforce.com"),
        (
            "https://acme--uat.sandbox.my.salesforce.com",
            "",
            "https://acme--uat.sandbox.my.salesforce.com",
        ),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ],
)
def test_accepted_login_urls(url: str, extra: str, expected: str) -> None:
    assert accepted_login_url(url, extra) == expected


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("http://login.salesforce.com", ""),
        ("https://login.salesforce.com:8443", ""),
        ("https://evil.example.com", ""),
        ("https://login.salesforce.com.evil.example.com", ""),
        ("https://my.salesforce.com", ""),
        ("https://acme.my.salesforce.com.evil.com", ""),
        ("http://127.0.0.1:9001", "http://127.0.0.1:9000"),  # the port differs
        ("javascript:alert(1)", ""),
        # a host that only looks like a My Domain to urlsplit: requests (urllib3) ends the
        # host at the backslash and would post the code, verifier and client secret to
        # evil.example (attack finding: Connect to Salesforce's My Domain URL field)
        ("https://evil.example\\.my.salesforce.com", ""),
        ("https://evil.example%2f.my.salesforce.com", ""),
        ("https://ev\u0131l.my.salesforce.com", ""),
        ("https://evil.example\x00.my.salesforce.com", ""),
        ("https://evil.example\t.my.salesforce.com", ""),
        ("https://-acme.my.salesforce.com", ""),
        ("https://acme..my.salesforce.com", ""),
        ("https://evil.example\\@acme.my.salesforce.com", ""),
        ("https://user:pw@acme.my.salesforce.com", ""),
    ],
)
def test_login_urls_outside_the_accepted_ones_are_refused(url: str, extra: str) -> None:
    with pytest.raises(UsageError, match="not a Salesforce login URL"):
        accepted_login_url(url, extra)


def test_what_requests_would_reach_is_what_was_accepted() -> None:
    """The host requests connects to for an accepted login URL is the accepted one (the
    backslash URL above reaches another host: why it is refused)."""
    from urllib3.util import parse_url

    hostile = "https://evil.example\\.my.salesforce.com/services/oauth2/token"
    assert parse_url(str(requests.Request("POST", hostile).prepare().url)).host == "evil.example"
    for url in ("https://acme.my.salesforce.com", "https://acme--uat.sandbox.my.salesforce.com"):
        token_url = accepted_login_url(url) + "/services/oauth2/token"
        prepared = str(requests.Request("POST", token_url).prepare().url)
        assert "https://" + str(parse_url(prepared).host) == url


def test_environment_field_choices() -> None:
    assert login_url_for("production", "") == "https://login.salesforce.com"
    assert login_url_for("sandbox", "ignored") == "https://test.salesforce.com"
    assert login_url_for("my-domain", "acme.my.salesforce.com") == "https://acme.my.salesforce.com"
    with pytest.raises(UsageError, match="needs its URL"):
        login_url_for("my-domain", " ")
    with pytest.raises(UsageError):
        login_url_for("elsewhere", "")
