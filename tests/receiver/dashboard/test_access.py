"""Organization access and CSRF on the dashboard's forms (CONTRACT section 5): another
organization answers 404 exactly like an unknown one, before the CSRF check; a form without
its token, with a wrong one, or from another site answers 403 and changes nothing."""

from __future__ import annotations

import pytest

from receiver.dashboard.rendering import FLASH_COOKIE
from receiver.db import transaction
from receiver.models import Organization
from tests.receiver.dashboard._harness import Dash, MakeDash, csrf_of


def _enabled(d: Dash, org: str | None = None) -> bool:
    with transaction(d.engine) as session:
        row = session.get(Organization, org or d.org)
        assert row is not None
        return row.enabled


@pytest.fixture
def limited(make_dash: MakeDash) -> tuple[Dash, str]:
    """Operator ``ops`` of the dash's organization only, and the name of another one."""
    d = make_dash(operator_orgs=None)
    d.add_operator("limited", d.org)
    other = d.new_org()
    assert d.sign_in(username="limited").status_code == 303
    return d, other


@pytest.mark.parametrize(
    "path",
    [
        "/users",
        "/features",
        "/provisioning-log",
        "/settings/crm",
        "/reconcile",
        "/users/005000000000001AAA",
    ],
)
def test_another_organization_is_exactly_an_unknown_one(
    limited: tuple[Dash, str], path: str
) -> None:
    d, other = limited
    theirs = d.client.get(f"/organizations/{other}{path}")
    unknown = d.client.get(f"/organizations/no-such-org{path}")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text.replace(other, "X") == unknown.text.replace("no-such-org", "X")
    assert d.client.get(f"/organizations/{d.org}{path}").status_code in (200, 404)


def test_home_lists_only_the_operators_organizations(limited: tuple[Dash, str]) -> None:
    d, other = limited
    home = d.client.get("/")
    assert f"/organizations/{d.org}/users" in home.text
    assert other not in home.text


def test_the_organization_check_comes_before_the_csrf_check(limited: tuple[Dash, str]) -> None:
    d, other = limited
    response = d.client.post(
        f"/organizations/{other}/features/agent-auto-provision",
        data={"expected": "enabled"},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert _enabled(d, other)


def _switch(d: Dash) -> str:
    return f"/organizations/{d.org}/features/agent-auto-provision"


def test_the_switch_flips_with_a_valid_token(dash: Dash) -> None:
    dash.sign_in()
    response = dash.post_form(
        _switch(dash),
        {"expected": "enabled", "return_to": "features"},
        page=f"/organizations/{dash.org}/features",
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/organizations/{dash.org}/features?flash=disabled"
    assert not _enabled(dash)


def test_a_form_without_a_token_changes_nothing(dash: Dash) -> None:
    dash.sign_in()
    response = dash.client.post(_switch(dash), data={"expected": "enabled"}, follow_redirects=False)
    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert _enabled(dash)


def test_a_wrong_token_changes_nothing(dash: Dash) -> None:
    dash.sign_in()
    response = dash.client.post(
        _switch(dash), data={"expected": "enabled", "csrf_token": "0" * 64}, follow_redirects=False
    )
    assert response.status_code == 403
    assert _enabled(dash)


def test_a_token_of_another_session_changes_nothing(dash: Dash) -> None:
    dash.sign_in()
    old = csrf_of(dash.client.get(f"/organizations/{dash.org}/users").text)
    dash.sign_in()  # a new session: a new token
    response = dash.client.post(
        _switch(dash), data={"expected": "enabled", "csrf_token": old}, follow_redirects=False
    )
    assert response.status_code == 403
    assert _enabled(dash)


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"referer": "https://evil.example/page"},
    ],
)
def test_a_cross_site_post_changes_nothing_even_with_the_token(
    dash: Dash, headers: dict[str, str]
) -> None:
    dash.sign_in()
    response = dash.post_form(
        _switch(dash),
        {"expected": "enabled"},
        page=f"/organizations/{dash.org}/users",
        headers=headers,
    )
    assert response.status_code == 403
    assert "another site" in response.text
    assert _enabled(dash)


def test_a_same_origin_post_with_fetch_metadata_works(dash: Dash) -> None:
    dash.sign_in()
    response = dash.post_form(
        _switch(dash),
        {"expected": "enabled"},
        page=f"/organizations/{dash.org}/users",
        headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"},
    )
    assert response.status_code == 303
    assert not _enabled(dash)


def test_the_public_url_origin_is_accepted(make_dash: MakeDash) -> None:
    d = make_dash(public_url="http://provision.example.com:8443")
    d.sign_in()
    response = d.post_form(
        _switch(d),
        {"expected": "enabled"},
        page=f"/organizations/{d.org}/users",
        headers={"origin": "http://provision.example.com:8443"},
    )
    assert response.status_code == 303


def test_a_signed_out_post_changes_nothing(dash: Dash) -> None:
    response = dash.client.post(_switch(dash), data={"expected": "enabled"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert _enabled(dash)


def test_a_form_posted_twice_flips_once(dash: Dash) -> None:
    dash.sign_in()
    token = csrf_of(dash.client.get(f"/organizations/{dash.org}/users").text)
    first = dash.client.post(
        _switch(dash), data={"expected": "enabled", "csrf_token": token}, follow_redirects=False
    )
    second = dash.client.post(
        _switch(dash), data={"expected": "enabled", "csrf_token": token}, follow_redirects=False
    )
    assert first.headers["location"].endswith("flash=disabled")
    assert second.headers["location"].endswith("flash=unchanged")
    assert not _enabled(dash)
    page = dash.client.get(second.headers["location"])
    assert "another tab or operator switched it first, or the form was sent twice" in page.text


def test_a_flash_in_the_sign_in_next_address_is_not_shown(dash: Dash) -> None:
    """A link to a page with ``?flash=`` reaches a signed-out admin through the sign-in:
    its redirect to ``next`` must not vouch for what no POST did."""
    users = f"/organizations/{dash.org}/users?flash=disabled"
    answer = dash.sign_in(next_path=users)
    assert answer.status_code == 303 and answer.headers["location"] == users
    assert FLASH_COOKIE not in answer.headers.get("set-cookie", "")
    assert "is now Disabled" not in dash.client.get(users).text


def test_a_flash_shows_once_after_its_redirect_and_never_from_a_link(dash: Dash) -> None:
    dash.sign_in()
    users = f"/organizations/{dash.org}/users"
    sentence = "Agent Auto Provision is now Disabled."
    token = csrf_of(dash.client.get(users).text)
    posted = dash.client.post(
        _switch(dash), data={"expected": "enabled", "csrf_token": token}, follow_redirects=False
    )
    assert sentence in dash.client.get(posted.headers["location"]).text
    assert sentence not in dash.client.get(posted.headers["location"]).text  # a reload
    # a link someone sent, or a flash code that is not the one just redirected with
    assert "is now Enabled" not in dash.client.get(users, params={"flash": "enabled"}).text
    dash.vouch(f"{users}?flash=disabled")  # vouches for another code
    assert "is now Enabled" not in dash.client.get(users, params={"flash": "enabled"}).text
    # a cookie planted with the right text but not signed by this dashboard
    dash.client.cookies.set(FLASH_COOKIE, "flash%3Denabled")
    assert "is now Enabled" not in dash.client.get(users, params={"flash": "enabled"}).text
    dash.vouch(f"{users}?flash=enabled")  # the one a real redirect sets: shown
    assert "is now Enabled" in dash.client.get(users, params={"flash": "enabled"}).text


def test_a_flash_cookie_vouches_for_one_page_for_two_minutes(
    dash: Dash, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack finding: a flash cookie an operator once received showed its sentence on
    any page with the same parameters, days later."""
    from receiver.dashboard import rendering

    dash.sign_in()
    users = f"/organizations/{dash.org}/users"
    features = f"/organizations/{dash.org}/features"
    sentence = "Agent Auto Provision is now Enabled."
    dash.vouch(f"{users}?flash=enabled")
    assert sentence not in dash.client.get(features, params={"flash": "enabled"}).text
    dash.vouch(f"{users}?flash=enabled")
    assert sentence in dash.client.get(users, params={"flash": "enabled"}).text
    dash.vouch(f"{users}?flash=enabled")
    monkeypatch.setattr(rendering, "_FLASH_MAX_AGE", -1)  # as if kept past its age
    assert sentence not in dash.client.get(users, params={"flash": "enabled"}).text


def test_unknown_paths_and_bad_names_get_a_clear_page(dash: Dash) -> None:
    dash.sign_in()
    for name in ["x" * 300, "%00", "<script>"]:
        response = dash.client.get(f"/organizations/{name}/users")
        assert response.status_code == 404
        assert "Organization not found" in response.text
        assert "<script>" not in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/organizations/{org}/user",
        "/organizations",
        "/nowhere",
        "/login/x",
        "/organizations/{org}/x/y",
    ],
)
def test_a_page_that_does_not_exist_is_a_dashboard_page(dash: Dash, path: str) -> None:
    """Attack finding: a mistyped or trimmed address answered a bare ``Not Found`` text,
    without the pages' security headers."""
    dash.sign_in()
    response = dash.client.get(path.format(org=dash.org))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert "Page not found" in response.text and 'role="alert"' in response.text
    assert 'href="/"' in response.text
    assert "Sign out" in response.text  # still signed in: the page says so


def test_words_in_an_unknown_address_stay_an_address(dash: Dash) -> None:
    """Attack finding: "/ Your session has expired. Sign in again at http://evil.example"
    read as the page's own sentence, and a NUL reached the HTML."""
    dash.sign_in()
    spoof = "/ Your session has expired. Sign in at http://evil.example %00-"
    page = dash.client.get(spoof).text
    assert "Your session has expired" not in page and "\x00" not in page
    assert "/%20Your%20session%20has" in page


def test_words_in_an_organization_or_filter_address_are_not_the_pages_sentences(
    dash: Dash,
) -> None:
    """Attack finding: an unknown organization's name, a log filter's unknown action and a
    bad user id were shown as typed ("Security notice: your session was flagged...")."""
    dash.sign_in()
    said = "Security notice: re-enter your password at aap-support.example"
    org = dash.client.get(f"/organizations/{said}/users")
    assert org.status_code == 404 and said not in org.text and "Security%20notice" in org.text
    log = dash.client.get(f"/organizations/{dash.org}/provisioning-log", params={"action": said})
    assert "unknown action" in log.text and said not in log.text
    user = dash.client.get(f"/organizations/{dash.org}/users/{said}")
    assert user.status_code == 404 and "Security notice" not in user.text


def test_an_organization_address_is_its_users_page(limited: tuple[Dash, str]) -> None:
    dash, other = limited
    response = dash.client.get(f"/organizations/{dash.org}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/organizations/{dash.org}/users"
    assert dash.client.get(f"/organizations/{other}").status_code == 404  # not theirs


@pytest.mark.parametrize("path", ["/logout", "/organizations/{org}/features/agent-auto-provision"])
def test_a_visit_to_a_form_address_is_a_dashboard_page(dash: Dash, path: str) -> None:
    """A GET of a POST-only address (a bookmark, ``?next=`` after sign-in): 405 with a page
    saying that nothing changed, and the ``Allow`` header."""
    dash.sign_in()
    response = dash.client.get(path.format(org=dash.org))
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "Nothing was changed" in response.text


@pytest.mark.parametrize("path", ["/v2/nowhere", "/v2/organizations"])
def test_unknown_api_paths_stay_plain(dash: Dash, path: str) -> None:
    response = dash.client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")


def test_pages_carry_security_headers(dash: Dash) -> None:
    dash.sign_in()
    response = dash.client.get(f"/organizations/{dash.org}/users")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_the_stylesheet_and_the_icon_are_served_signed_out(dash: Dash) -> None:
    page = dash.client.get("/login").text
    assert '<link rel="icon" href="/static/dashboard/icon.svg"' in page
    for path, kind in [
        ("/static/dashboard/style.css", "text/css"),
        ("/static/dashboard/icon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),  # asked for by browsers on pages naming no icon
    ]:
        response = dash.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(kind)
        assert response.headers["x-content-type-options"] == "nosniff"
    assert b"<svg" in dash.client.get("/favicon.ico").content


def test_a_huge_form_is_refused_unread(dash: Dash) -> None:
    dash.sign_in()
    token = csrf_of(dash.client.get(f"/organizations/{dash.org}/users").text)
    response = dash.client.post(
        _switch(dash),
        data={"expected": "enabled", "csrf_token": token, "pad": "x" * 100_000},
        follow_redirects=False,
    )
    assert response.status_code == 403 and "too large" in response.text
    assert _enabled(dash)
    login = dash.client.post("/login", data={"username": "x" * 20_000}, follow_redirects=False)
    assert login.status_code == 403 and "too large" in login.text
