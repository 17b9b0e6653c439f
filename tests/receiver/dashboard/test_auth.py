"""Sign-in, the session cookie, sign-out, lifetimes, revocation and the throttle
(receiver.dashboard.auth / login; CONTRACT section 5)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from receiver.dashboard.auth import ADDRESS_LIMIT, USERNAME_LIMIT
from receiver.dashboard.operators import remove_operator, set_password
from receiver.dashboard.tables import OperatorSession, SignInFailure
from receiver.db import transaction
from tests.receiver.dashboard._harness import PASSWORD, Dash, MakeDash, csrf_of


def _set_cookie(response: object) -> list[str]:
    return response.headers.get_list("set-cookie")  # type: ignore[attr-defined]


def test_home_redirects_to_login_when_signed_out(dash: Dash) -> None:
    response = dash.client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_login_form_has_the_contract_labels(dash: Dash) -> None:
    page = dash.client.get("/login")
    assert page.status_code == 200
    assert '<label for="username">Username</label>' in page.text
    assert '<label for="password">Password</label>' in page.text
    assert '<button type="submit">Sign in</button>' in page.text
    assert "Sign out" not in page.text


def test_wrong_password_answers_401_with_the_form_and_no_session_cookie(dash: Dash) -> None:
    response = dash.sign_in(password="not the password!")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert "Sign in" in response.text
    assert not any(c.startswith("aap_session=") for c in _set_cookie(response))
    assert dash.client.get("/", follow_redirects=False).status_code == 303


def test_unknown_username_answers_like_a_wrong_password(dash: Dash) -> None:
    response = dash.sign_in(username="nobody")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text


def test_sign_in_sets_a_signed_httponly_lax_cookie_and_lists_the_organizations(
    dash: Dash,
) -> None:
    response = dash.sign_in()
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(c for c in _set_cookie(response) if c.startswith("aap_session="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "secure" not in lowered
    home = dash.client.get("/")
    assert home.status_code == 200
    assert f'href="/organizations/{dash.org}/users"' in home.text
    assert "Sign out" in home.text
    with transaction(dash.engine) as session:
        rows = session.exec(select(OperatorSession)).all()
    assert len(rows) == 1
    assert rows[0].id not in cookie  # only the token's hash is stored


def test_username_is_case_insensitive(dash: Dash) -> None:
    assert dash.sign_in(username="OPS").status_code == 303


def test_cookie_is_secure_and_host_prefixed_behind_https(make_dash: MakeDash) -> None:
    d = make_dash(public_url="https://provision.example.com", base_url="https://testserver")
    response = d.sign_in()
    cookie = next(c for c in _set_cookie(response) if "aap_session=" in c)
    assert cookie.startswith("__Host-aap_session=")
    assert "secure" in cookie.lower()


def _host_cookie_rules_hold(set_cookie: str) -> bool:
    """What a browser requires of a ``__Host-`` cookie, a clearing one too, or it ignores
    the header (RFC 6265bis 4.1.3.2): ``Secure``, ``Path=/``, no ``Domain``."""
    attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
    return (
        "secure" in attributes
        and "path=/" in attributes
        and not any(a.startswith("domain=") for a in attributes)
    )


def test_sign_out_clears_the_host_prefixed_cookie_behind_https(make_dash: MakeDash) -> None:
    """Attack finding: behind https, Sign out cleared ``__Host-aap_session`` without
    ``Secure``, which a browser ignores: the dead cookie stayed in Chromium and every later
    visit said the session had ended. The redirect of an ended session clears it the same
    way."""
    d = make_dash(public_url="https://provision.example.com", base_url="https://testserver")
    d.sign_in()
    old = d.client.cookies.get("__Host-aap_session")
    response = d.post_form("/logout", {}, page="/")
    cleared = [c for c in _set_cookie(response) if c.startswith("__Host-aap_session=")]
    assert len(cleared) == 1 and _host_cookie_rules_hold(cleared[0])
    assert "max-age=0" in cleared[0].lower()
    d.client.cookies.set("__Host-aap_session", old, domain="testserver.local")
    ended = d.client.get("/", follow_redirects=False)
    assert ended.status_code == 303 and "ended=1" in ended.headers["location"]
    cleared = [c for c in _set_cookie(ended) if c.startswith("__Host-aap_session=")]
    assert len(cleared) == 1 and _host_cookie_rules_hold(cleared[0])


def test_the_flash_cookie_is_host_prefixed_and_cleared_as_set_behind_https(
    make_dash: MakeDash,
) -> None:
    """Attack finding: the one-shot flash cookie had neither ``Secure`` nor the
    ``__Host-`` prefix the session cookie has."""
    d = make_dash(public_url="https://provision.example.com", base_url="https://testserver")
    d.sign_in()
    response = d.post_form("/logout", {}, page="/")
    flash = [c for c in _set_cookie(response) if c.startswith("__Host-aap_flash=")]
    assert len(flash) == 1 and _host_cookie_rules_hold(flash[0])
    page = d.client.get(response.headers["location"])
    assert "You are signed out." in page.text
    cleared = [c for c in _set_cookie(page) if c.startswith("__Host-aap_flash=")]
    assert len(cleared) == 1 and _host_cookie_rules_hold(cleared[0])


def test_a_forged_cookie_is_refused(dash: Dash) -> None:
    dash.client.cookies.set("aap_session", "forged.value", domain="testserver.local")
    response = dash.client.get(f"/organizations/{dash.org}/users", follow_redirects=False)
    assert response.status_code == 303
    assert "/login" in response.headers["location"] and "ended=1" in response.headers["location"]
    page = dash.client.get(response.headers["location"])
    assert "Your session ended" in page.text


def test_a_session_ends_after_the_idle_lifetime(dash: Dash) -> None:
    dash.sign_in()
    dash.clock.advance(minutes=59)
    assert dash.client.get("/").status_code == 200
    dash.clock.advance(minutes=59)  # used 59 minutes ago: still alive
    assert dash.client.get("/").status_code == 200
    dash.clock.advance(minutes=61)
    response = dash.client.get("/", follow_redirects=False)
    assert response.status_code == 303 and "ended=1" in response.headers["location"]


def test_a_session_ends_at_the_absolute_lifetime_even_when_used(dash: Dash) -> None:
    dash.sign_in()
    for _ in range(23):
        dash.clock.advance(minutes=30)
        assert dash.client.get("/").status_code == 200
    dash.clock.advance(minutes=30)  # 12 hours after sign-in
    assert dash.client.get("/", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_server_side(dash: Dash) -> None:
    dash.sign_in()
    old_cookie = dash.client.cookies.get("aap_session")
    response = dash.post_form("/logout", {}, page="/")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert dash.client.get("/", follow_redirects=False).status_code == 303
    dash.client.cookies.set(
        "aap_session", old_cookie, domain="testserver.local"
    )  # replay the old cookie
    assert dash.client.get("/", follow_redirects=False).status_code == 303


def test_sign_out_without_the_csrf_token_is_refused(dash: Dash) -> None:
    dash.sign_in()
    response = dash.client.post("/logout", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert dash.client.get("/").status_code == 200


def test_a_password_change_or_removal_ends_the_sessions(dash: Dash) -> None:
    dash.sign_in()
    with transaction(dash.engine) as session:
        set_password(session, username="ops", password="another long password")
    assert dash.client.get("/", follow_redirects=False).status_code == 303
    assert dash.sign_in(password="another long password").status_code == 303
    with transaction(dash.engine) as session:
        remove_operator(session, username="ops")
    assert dash.client.get("/", follow_redirects=False).status_code == 303


def test_every_sign_in_gets_a_new_session_token(dash: Dash) -> None:
    dash.client.cookies.set("aap_session", "planted-by-an-attacker", domain="testserver.local")
    dash.sign_in()
    first = dash.client.cookies.get("aap_session")
    assert first != "planted-by-an-attacker"
    dash.sign_in()
    assert dash.client.cookies.get("aap_session") != first


def test_signing_in_again_ends_the_session_the_browser_held(dash: Dash) -> None:
    """The new cookie overwrites the old one: the old session ends at once rather than
    live on, held by nobody, until its idle lifetime."""
    dash.sign_in()
    old_cookie = dash.client.cookies.get("aap_session")
    assert dash.sign_in().status_code == 303
    new_cookie = dash.client.cookies.get("aap_session")
    assert new_cookie != old_cookie and dash.client.get("/").status_code == 200
    dash.client.cookies.set("aap_session", old_cookie, domain="testserver.local")
    assert dash.client.get("/", follow_redirects=False).status_code == 303


def test_wrong_passwords_are_throttled_per_username(dash: Dash) -> None:
    for _ in range(USERNAME_LIMIT):
        assert dash.sign_in(password="wrong password!!").status_code == 401
    held = dash.sign_in()  # the right password, but held
    assert held.status_code == 429
    assert "Too many failed sign-ins" in held.text
    dash.clock.advance(minutes=16)
    assert dash.sign_in().status_code == 303


def test_the_throttle_holds_across_workers(make_dash: MakeDash) -> None:
    """Two apps on one store are two ``serve`` workers: failures counted by one hold the
    other."""
    a = make_dash()
    b = make_dash()
    b.add_operator("ops2")
    for _ in range(USERNAME_LIMIT):
        assert a.sign_in(username="ops2", password="wrong password!!").status_code == 401
    assert b.sign_in(username="ops2").status_code == 429
    with transaction(a.engine) as session:
        subjects = session.exec(select(SignInFailure.subject)).all()
    assert all("ops2" not in s for s in subjects)  # hashed, never the typed text


def test_wrong_passwords_are_throttled_per_address(dash: Dash) -> None:
    for n in range(ADDRESS_LIMIT):
        assert dash.sign_in(username=f"guess{n}", password="wrong password!!").status_code == 401
    assert dash.sign_in().status_code == 429


def test_a_success_clears_the_username_count(dash: Dash) -> None:
    for _ in range(USERNAME_LIMIT - 1):
        dash.sign_in(password="wrong password!!")
    assert dash.sign_in().status_code == 303
    for _ in range(USERNAME_LIMIT - 1):
        assert dash.sign_in(password="wrong password!!").status_code == 401
    assert dash.sign_in().status_code == 303


@pytest.mark.parametrize(
    "headers",
    [{"sec-fetch-site": "cross-site"}, {"origin": "https://evil.example"}, {"origin": "null"}],
)
def test_login_from_another_site_is_refused(dash: Dash, headers: dict[str, str]) -> None:
    page = dash.client.get("/login")
    response = dash.client.post(
        "/login",
        data={"username": "ops", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        headers=headers,
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert dash.client.get("/", follow_redirects=False).status_code == 303


def test_login_without_its_token_is_refused(dash: Dash) -> None:
    dash.client.get("/login")
    response = dash.client.post(
        "/login", data={"username": "ops", "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403


def test_login_with_a_same_origin_header_works(dash: Dash) -> None:
    page = dash.client.get("/login")
    response = dash.client.post(
        "/login",
        data={"username": "ops", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )
    assert response.status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_sign_in_never_redirects_to_another_site(dash: Dash, target: str) -> None:
    response = dash.sign_in(next_path=target)
    assert response.headers["location"] == "/"


def test_sign_in_returns_to_the_page_asked_for(dash: Dash) -> None:
    first = dash.client.get(f"/organizations/{dash.org}/features", follow_redirects=False)
    login = dash.client.get(first.headers["location"])
    assert f"/organizations/{dash.org}/features" in login.text
    response = dash.client.post(
        "/login",
        data={
            "username": "ops",
            "password": PASSWORD,
            "csrf_token": csrf_of(login.text),
            "next": f"/organizations/{dash.org}/features",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == f"/organizations/{dash.org}/features"


def test_the_throttle_holds_against_concurrent_attempts(make_dash: MakeDash) -> None:
    """Wrong passwords sent at once (each waits on a barrier, then POSTs) are counted
    before any password is checked: exactly ``USERNAME_LIMIT`` of them are checked (401),
    the others are held (429), on one worker or two."""
    a, b = make_dash(), make_dash()
    clients = [a, b] * 6
    tokens = {id(d): csrf_of(d.client.get("/login").text) for d in (a, b)}
    barrier = threading.Barrier(len(clients))

    def attempt(i: int) -> int:
        d = clients[i]
        data = {"username": "ops", "password": "wrong password!!"}
        data["csrf_token"] = tokens[id(d)]
        barrier.wait(timeout=30)
        return int(d.client.post("/login", data=data, follow_redirects=False).status_code)

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        statuses = sorted(pool.map(attempt, range(len(clients))))
    assert statuses == [401] * USERNAME_LIMIT + [429] * (len(clients) - USERNAME_LIMIT)


def test_a_reloaded_or_expired_sign_in_form_is_refused_with_the_form_again(dash: Dash) -> None:
    """Newcomer finding: a reload after a wrong password sent the old form again and
    answered a bare "Form refused" page."""
    page = dash.client.get("/login")
    token = csrf_of(page.text)
    wrong = {"username": "ops", "password": "not it", "csrf_token": token}
    assert dash.client.post("/login", data=wrong, follow_redirects=False).status_code == 401
    again = dash.client.post("/login", data=wrong, follow_redirects=False)  # the reload
    assert again.status_code == 403  # refused, nothing checked (CONTRACT section 5)
    assert "was sent again" in again.text and 'value="ops"' in again.text
    fresh = {"username": "ops", "password": PASSWORD, "csrf_token": csrf_of(again.text)}
    assert dash.client.post("/login", data=fresh, follow_redirects=False).status_code == 303


def test_signed_out_is_said_once(dash: Dash) -> None:
    dash.sign_in()
    token = csrf_of(dash.client.get("/").text)
    page = dash.client.post("/logout", data={"csrf_token": token})
    assert page.text.count("You are signed out.") == 1
