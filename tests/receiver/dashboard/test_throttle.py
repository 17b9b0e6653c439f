"""The sign-in throttle (receiver.dashboard.throttle): per (username, address), per
address, per username across addresses, per trusted browser; what the 429 page says."""

from __future__ import annotations

from receiver.dashboard.throttle import ADDRESS_LIMIT, USERNAME_LIMIT, USERNAME_TOTAL_LIMIT
from tests.receiver.dashboard._harness import Dash, browser, sign_in_with

WRONG = "wrong password!!"


_browser = browser
_sign_in = sign_in_with


def test_a_stranger_at_another_address_cannot_lock_the_operator_out(dash: Dash) -> None:
    stranger = _browser(dash, "203.0.113.7")
    statuses = [_sign_in(stranger, password=WRONG).status_code for _ in range(USERNAME_LIMIT + 3)]
    assert statuses == [401] * USERNAME_LIMIT + [429] * 3
    assert _sign_in(stranger).status_code == 429  # the stranger stays held, right or wrong
    assert dash.sign_in().status_code == 303  # the operator, from their own address


def test_the_held_page_says_which_limit_and_when_to_retry(dash: Dash) -> None:
    for _ in range(USERNAME_LIMIT):
        dash.sign_in(password=WRONG)
    dash.clock.advance(minutes=5)
    held = dash.sign_in()
    assert held.status_code == 429
    assert "for this username from this address" in held.text
    assert "Try again after 12:15 UTC (in 10 minutes)" in held.text
    assert held.headers["retry-after"] == "600"
    assert '<label for="username">Username</label>' in held.text  # the form is still there


def test_one_address_guessing_many_usernames_is_held(dash: Dash) -> None:
    guesser = _browser(dash, "198.51.100.9")
    for n in range(ADDRESS_LIMIT):
        assert _sign_in(guesser, username=f"guess{n}", password=WRONG).status_code == 401
    held = _sign_in(guesser)
    assert held.status_code == 429
    assert "from this address (for any username)" in held.text
    assert dash.sign_in().status_code == 303


def test_guessing_from_many_addresses_holds_the_username_except_in_a_known_browser(
    dash: Dash,
) -> None:
    assert dash.sign_in().status_code == 303  # the operator's browser is now known
    addresses = USERNAME_TOTAL_LIMIT // USERNAME_LIMIT
    for a in range(addresses):
        stranger = _browser(dash, f"192.0.2.{a + 1}")
        for _ in range(USERNAME_LIMIT):
            assert _sign_in(stranger, password=WRONG).status_code == 401
    newcomer = _browser(dash, "192.0.2.200")
    held = _sign_in(newcomer)
    assert held.status_code == 429
    assert "from many addresses" in held.text
    assert "a browser where you signed in as it before still can" in held.text
    assert dash.sign_in().status_code == 303  # the known browser signs in
    dash.clock.advance(minutes=61)
    assert _sign_in(newcomer).status_code == 303


def test_a_known_browser_is_held_by_its_own_failures(dash: Dash) -> None:
    assert dash.sign_in().status_code == 303
    for _ in range(USERNAME_LIMIT):
        assert dash.sign_in(password=WRONG).status_code == 401
    held = dash.sign_in()
    assert held.status_code == 429
    assert "from this browser" in held.text


def test_the_device_cookie_is_httponly_and_only_for_the_login_path(dash: Dash) -> None:
    response = dash.sign_in()
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("aap_device="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "path=/login" in lowered and "samesite=lax" in lowered


def test_ipv6_addresses_count_by_their_64_network(dash: Dash) -> None:
    """Attack finding 7: one host holds a whole /64; rotating through it is one address."""
    for n in range(USERNAME_LIMIT):
        rotating = _browser(dash, f"2001:db8:1:2::{n + 1:x}")
        assert _sign_in(rotating, password=WRONG).status_code == 401
    assert _sign_in(_browser(dash, "2001:db8:1:2::ffff")).status_code == 429
    assert _sign_in(_browser(dash, "2001:db8:1:3::1")).status_code == 303  # another /64


def test_address_keys() -> None:
    from receiver.dashboard.throttle import address_key

    assert address_key("2001:db8::1") == "2001:db8::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("testclient") == "testclient"


def test_a_password_change_ends_the_browser_trust(dash: Dash) -> None:
    """Attack finding 7: the device cookie is bound to the operator's credential."""
    from receiver.dashboard.operators import set_password
    from receiver.db import transaction

    assert dash.sign_in().status_code == 303  # known browser
    with transaction(dash.engine) as session:
        set_password(session, username="ops", password="another long password")
    for a in range(USERNAME_TOTAL_LIMIT // USERNAME_LIMIT):
        stranger = _browser(dash, f"192.0.2.{a + 1}")
        for _ in range(USERNAME_LIMIT):
            _sign_in(stranger, password=WRONG)
    held = dash.sign_in(password="another long password")
    assert held.status_code == 429 and "from many addresses" in held.text
