"""How a dashboard page is drawn: the base layout's values, Post/Redirect/Get redirects,
error pages, flash sentences and the security headers every response carries.

Handlers reach these through :class:`receiver.dashboard.framework.SignedInPage` and
:class:`~receiver.dashboard.framework.OrgPage` (``page.render``, ``page.error``); the sign-in
page, which has no viewer yet, calls :func:`render` itself. Nothing here reads the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from receiver.dashboard import csrf
from receiver.dashboard.auth import Viewer
from receiver.dashboard.cookies import clear_private_cookie, set_private_cookie
from receiver.dashboard.state import SHOWN_AS_CODE_POINTS, DashboardState, get_state
from receiver.models import Organization

__all__ = [
    "FLASH_COOKIE",
    "FLASH_MESSAGES",
    "FLASH_PROBLEMS",
    "client_address",
    "csv_cell",
    "flash_cookie_name",
    "error_page",
    "not_found_page",
    "org_url",
    "redirect",
    "render",
    "shown_address",
    "vouched",
    "vouching_cookie",
    "with_headers",
]

#: ``?flash=`` codes -> the sentence shown after a Post/Redirect/Get (never echoed text).
#: Modules add their own codes here at import time.
FLASH_MESSAGES: dict[str, str] = {
    "enabled": "Agent Auto Provision is now Enabled.",
    "disabled": "Agent Auto Provision is now Disabled.",
    "unchanged": "Nothing changed: the switch was already in that position (another tab or "
    "operator switched it first, or the form was sent twice).",
    "signed-out": "You are signed out.",
}

#: The ``?flash=`` codes that report a problem (nothing was done, or part failed): shown as
#: an alert in the error colours instead of the green status line.
FLASH_PROBLEMS: set[str] = set()

#: The query parameters that report what a POST just did (``?flash=`` codes, the CRM
#: page's ``?notice=``, a bulk replay's counts, a ``Sync now``'s plan id or failed job): a page shows them
#: only when :data:`FLASH_COOKIE` vouches for them (:func:`vouched`).
VOUCHED_PARAMS = frozenset(
    {"flash", "notice", "replayed", "applied", "again", "left", "synced", "sync_job"}
)

#: The one-shot cookie that vouches for those parameters (``__Host-aap_flash`` behind
#: https): ``redirect(url, vouch=request)`` sets it to the ones it redirects with, signed
#: with the dashboard's secret, with the page's path and the time; :func:`render` shows them
#: only on that page, within two minutes, when the page's own are the same, and clears it.
#: A reload, a bookmark, a link someone sent ("?flash=enabled", "?replayed=40"), a cookie
#: planted by another site or one kept from an earlier redirect shows nothing.
FLASH_COOKIE = "aap_flash"
_FLASH_MAX_AGE = 120  # seconds: a redirect is followed at once
_FLASH_SALT = "aap-flash"

_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def client_address(request: Request) -> str:
    """The peer address (``serve`` runs uvicorn without proxy headers)."""
    return request.client.host if request.client is not None else "unknown"


def csv_cell(value: object) -> str:
    """A CSV cell of a download; text that a spreadsheet would run as a formula gets a
    leading quote (OWASP "CSV Injection"), and bidirectional controls and invisible
    characters show as their code points, as on the pages
    (:data:`~receiver.dashboard.state.SHOWN_AS_CODE_POINTS`)."""
    text = "" if value is None else str(value).translate(SHOWN_AS_CODE_POINTS)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def with_headers(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _vouched_text(pairs: Iterable[tuple[str, str]]) -> str:
    """The :data:`VOUCHED_PARAMS` of a query, in order, as a cookie-safe text."""
    return quote(urlencode([(k, v) for k, v in pairs if k in VOUCHED_PARAMS]), safe="")


def flash_cookie_name(secure: bool) -> str:
    """``__Host-aap_flash`` over https, else :data:`FLASH_COOKIE`."""
    return "__Host-" + FLASH_COOKIE if secure else FLASH_COOKIE


def _vouched_for(path: str, text: str) -> str:
    """What the flash cookie signs: the page's path and its vouched parameters (a cookie
    vouches for one page only: attack finding, one was shown on any page)."""
    return unquote(path) + "?" + text


def vouching_cookie(state: DashboardState, url: str) -> tuple[str, str] | None:
    """``(name, value)`` of the cookie that vouches for ``url``'s :data:`VOUCHED_PARAMS`
    on ``url``'s page (their text and the path, signed with ``state.secret`` and the time:
    good for :data:`_FLASH_MAX_AGE` seconds), or ``None`` when it has none."""
    parts = urlsplit(url)
    text = _vouched_text(parse_qsl(parts.query))
    if not text:
        return None
    signed = URLSafeTimedSerializer(state.secret, salt=_FLASH_SALT).dumps(
        _vouched_for(parts.path, text)
    )
    return flash_cookie_name(state.secure_cookie), signed


def redirect(url: str, *, vouch: Request | None = None) -> Response:
    """A 303 See Other (Post/Redirect/Get). With ``vouch``, the request of the POST whose
    outcome ``url`` reports, the :data:`VOUCHED_PARAMS` of ``url``'s query are vouched for
    by the flash cookie (:func:`vouching_cookie`: codes and counts only, no echoed text).
    Without it nothing is vouched: a URL that came with a request (the sign-in's ``next``)
    never makes its parameters look like what a POST did."""
    response = with_headers(RedirectResponse(url, status_code=303))
    if vouch is not None:
        state = get_state(vouch)
        cookie = vouching_cookie(state, url)
        if cookie is not None:
            set_private_cookie(
                response, *cookie, max_age=_FLASH_MAX_AGE, path="/", secure=state.secure_cookie
            )
    return response


def vouched(request: Request) -> dict[str, str]:
    """The request's :data:`VOUCHED_PARAMS` (name -> value) when the flash cookie holds
    exactly them, signed (the redirect of a POST just set it), else ``{}``."""
    pairs = request.query_params.multi_items()
    text = _vouched_text(pairs)
    state = get_state(request)
    raw = request.cookies.get(flash_cookie_name(state.secure_cookie))
    if not text or raw is None:
        return {}
    try:
        signed = URLSafeTimedSerializer(state.secret, salt=_FLASH_SALT).loads(
            raw, max_age=_FLASH_MAX_AGE
        )
    except BadSignature:  # SignatureExpired too: a cookie kept past its two minutes
        return {}
    if signed != _vouched_for(request.url.path, text):
        return {}
    return {k: v for k, v in pairs if k in VOUCHED_PARAMS}


def render(
    request: Request,
    template: str,
    values: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    viewer: Viewer | None = None,
    organization: Organization | None = None,
    nav: str | None = None,
) -> Response:
    """Render ``templates/dashboard/<template>`` with the base layout's values: ``viewer``,
    ``organization`` (its menu), ``nav`` (the current menu entry), ``csrf_field()``,
    ``org_url(path)``, ``flash`` (from ``?flash=``), plus ``values``."""
    state = get_state(request)
    token = (
        csrf.form_token(state.secret, "session", viewer.session_token)
        if viewer is not None
        else None
    )

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(csrf.FIELD, token or "")

    def menu_url(path: str = "", **query: object) -> str:
        assert organization is not None
        return org_url(organization.id, path, **query)

    flash_code = vouched(request).get("flash", "")
    flash = FLASH_MESSAGES.get(flash_code)
    data: dict[str, Any] = {
        "viewer": viewer,
        "organization": organization,
        "nav": nav,
        "csrf_field": csrf_field,
        "org_url": menu_url,
        "flash": flash,
        "flash_problem": flash is not None and flash_code in FLASH_PROBLEMS,
        "flash_why": None,  # a page may add why a problem happened (a failed Sync now's)
        "request_path": request.url.path,
    }
    data.update(values or {})
    html = state.templates.get_template(template).render(data)
    response = with_headers(HTMLResponse(html, status_code=status))
    flash_cookie = flash_cookie_name(state.secure_cookie)
    if flash_cookie in request.cookies:  # shown once (or stale): a reload shows no flash
        clear_private_cookie(response, flash_cookie, path="/", secure=state.secure_cookie)
    return response


def org_url(organization_id: str, path: str = "", **query: object) -> str:
    """The dashboard path ``/organizations/{organization_id}{path}`` with ``query`` (empty
    values left out), the organization name percent-encoded."""
    url = f"/organizations/{quote(organization_id, safe='')}{path}"
    pairs = {k: v for k, v in query.items() if v not in (None, "")}
    return url + ("?" + urlencode(pairs) if pairs else "")


def error_page(
    request: Request,
    status: int,
    title: str,
    message: str,
    *,
    viewer: Viewer | None = None,
    hint: str | None = None,
    organization: Organization | None = None,
) -> Response:
    """A page that says what happened (``title``, ``message``) and what to do (``hint``);
    with ``organization`` (one the viewer manages) in its menu, with a link to its Users."""
    return render(
        request,
        "error.html.j2",
        {"title": title, "message": message, "hint": hint, "status": status},
        status=status,
        viewer=viewer,
        organization=organization,
    )


def shown_address(text: str, limit: int = 80) -> str:
    """Text from an address, as the address bar writes it (percent-encoded: a space, a
    control or a NUL stays escaped, so words put in a link do not read as the page's own
    sentence), cut to ``limit`` characters."""
    address = quote(text, safe="/:@!$&'()*+,;=-._~")
    return address if len(address) <= limit else address[:limit] + "…"


def not_found_page(request: Request, viewer: Viewer | None, organization_id: str) -> Response:
    """The one page for an unknown organization and one the operator does not manage."""
    return error_page(
        request,
        404,
        "Organization not found",
        f"There is no organization {shown_address(organization_id, 40)} that you can manage.",
        viewer=viewer,
        hint="Choose one of your organizations on the home page.",
    )
