"""``AGENT_PROVISION_TRUSTED_PROXIES``: behind the reverse proxy README recommends, every
request reaches ``serve`` from the proxy's address. Without the setting the sign-in
throttle counted every browser as one address (attack finding: a stranger's 5 wrong
passwords held an operator's username for every new browser, 30 held everyone) and the
Features audit named the proxy. With it, the ``X-Forwarded-For`` of a listed proxy gives
the client's address; anyone else's is ignored."""

from __future__ import annotations

import warnings

import pytest
from pydantic import ValidationError

from receiver.dashboard.throttle import ADDRESS_LIMIT, USERNAME_LIMIT
from receiver.settings import Settings
from tests.receiver.dashboard._harness import (
    PASSWORD,
    Dash,
    MakeDash,
    browser,
    csrf_of,
    sign_in_with,
)

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

WRONG = "wrong password!!"
PROXY = "10.0.0.7"


def _browser(d: Dash, client: str, forwarded_for: str | None = None) -> TestClient:
    """A browser whose requests reach the app from ``client`` (the proxy, or itself),
    with ``X-Forwarded-For`` when given."""
    return browser(d, client, {"x-forwarded-for": forwarded_for} if forwarded_for else None)


def _sign_in(client: TestClient, username: str = "ops", password: str = PASSWORD) -> int:
    return int(sign_in_with(client, username, password).status_code)


def test_behind_a_trusted_proxy_a_stranger_holds_only_their_own_address(
    make_dash: MakeDash,
) -> None:
    d = make_dash(trusted_proxies=f"{PROXY}, 192.0.2.0/24")
    stranger = _browser(d, PROXY, "203.0.113.7")
    statuses = [_sign_in(stranger, password=WRONG) for _ in range(USERNAME_LIMIT + 1)]
    assert statuses == [401] * USERNAME_LIMIT + [429]
    for n in range(ADDRESS_LIMIT):
        _sign_in(stranger, username=f"guess{n}", password=WRONG)
    assert _sign_in(_browser(d, PROXY, "198.51.100.20")) == 303  # the same proxy
    assert _sign_in(_browser(d, "192.0.2.9", "198.51.100.21")) == 303  # a listed network


def test_without_the_setting_the_proxy_is_every_browser(make_dash: MakeDash) -> None:
    """What the setting is for: one address for everyone behind the proxy."""
    d = make_dash()
    stranger = _browser(d, PROXY, "203.0.113.7")
    for _ in range(USERNAME_LIMIT):
        _sign_in(stranger, password=WRONG)
    assert _sign_in(_browser(d, PROXY, "198.51.100.20")) == 429


def test_an_unlisted_peer_cannot_choose_its_address(make_dash: MakeDash) -> None:
    d = make_dash(trusted_proxies=PROXY)
    statuses = [
        _sign_in(_browser(d, "203.0.113.50", f"198.51.100.{n}"), password=WRONG)
        for n in range(USERNAME_LIMIT + 1)
    ]
    assert statuses == [401] * USERNAME_LIMIT + [429]


def test_the_switch_audit_names_the_client_behind_the_proxy(make_dash: MakeDash) -> None:
    d = make_dash(trusted_proxies=PROXY)
    browser = _browser(d, PROXY, "198.51.100.20")
    assert _sign_in(browser) == 303
    features = f"/organizations/{d.org}/features"
    token = csrf_of(browser.get(features).text)
    flipped = browser.post(
        features + "/agent-auto-provision",
        data={"csrf_token": token, "expected": "enabled", "return_to": "features"},
        follow_redirects=False,
    )
    assert flipped.status_code == 303
    page = browser.get(features).text
    assert "198.51.100.20" in page and PROXY not in page


@pytest.mark.parametrize("value", ["proxy.example", "10.0.0.300", "*", "10.0.0.0/33"])
def test_a_trusted_proxy_must_be_an_address_or_network(value: str) -> None:
    with pytest.raises(ValidationError, match="trusted proxies"):
        Settings(trusted_proxies=value)


def test_trusted_proxies_are_read_as_networks() -> None:
    settings = Settings(trusted_proxies=" 10.0.0.7 ,192.0.2.1/24,, ::1")
    assert settings.trusted_proxies == "10.0.0.7,192.0.2.0/24,::1"
    assert Settings().trusted_proxies == ""
