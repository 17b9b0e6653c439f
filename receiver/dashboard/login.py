"""``/login`` (sign in), ``POST /logout`` (sign out) and ``GET /`` (the operator's
organizations), CONTRACT section 5.

The login form is protected against login CSRF by a random nonce in a short-lived signed
cookie (``aap_signin``) whose HMAC is the form's token; the Origin / Sec-Fetch-Site check
of ``receiver.dashboard.csrf`` applies too. Wrong credentials answer 401 with the form and
a message and set no session cookie; a held attempt (``receiver.dashboard.throttle``)
answers 429 with a ``Retry-After`` header and a message saying which limit was reached and
the time to try again. A right password also sets the device cookie that lets this browser
sign in as that username while strangers' failures hold it elsewhere.
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.context import context_of
from receiver.dashboard import csrf
from receiver.dashboard.auth import (
    check_password,
    clear_session_cookie,
    cookie_name,
    end_session,
    sign_token,
    start_session,
    unsign_token,
)
from receiver.dashboard.cookies import clear_private_cookie, set_private_cookie
from receiver.dashboard.framework import (
    SignedInPage,
    client_address,
    csrf_refused,
    form_size_problem,
    guarded,
    redirect,
    render,
    signed_in_route,
)
from receiver.dashboard.glance import OrgGlance, org_glance
from receiver.dashboard.operators import credential_stamp
from receiver.dashboard.state import get_state
from receiver.dashboard.throttle import (
    DEVICE_COOKIE,
    DEVICE_LIFETIME,
    Attempt,
    Hold,
    device_cookie_value,
    device_token,
    forgive_attempt,
    reserve_attempt,
)
from receiver.db import transaction
from receiver.models import Organization

__all__ = ["ROUTES"]

_NONCE_COOKIE = "aap_signin"
_NONCE_SALT = "aap-signin"
_NONCE_MAX_AGE = 3600


def _safe_next(value: str | None) -> str:
    """A local path to go to after sign-in (never another site)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or len(value) > 2000
        or not value.isprintable()
    ):
        return "/"
    return value


def _login_form(
    request: Request,
    *,
    status: int = 200,
    message: str | None = None,
    username: str = "",
    next_path: str = "/",
) -> Response:
    state = get_state(request)
    nonce = secrets.token_urlsafe(24)
    ended = request.query_params.get("ended") == "1" and message is None
    response = render(
        request,
        "login.html.j2",
        {
            "message": message,
            "username": username[:320],
            "next_path": next_path,
            "login_token": csrf.form_token(state.secret, "signin", nonce),
            "ended": ended,
        },
        status=status,
    )
    set_private_cookie(
        response,
        _NONCE_COOKIE,
        URLSafeTimedSerializer(state.secret, salt=_NONCE_SALT).dumps(nonce),
        max_age=_NONCE_MAX_AGE,
        path="/login",
        secure=state.secure_cookie,
    )
    return response


async def login_page(request: Request) -> Response:
    """``GET /login``: the form."""
    return _login_form(request, next_path=_safe_next(request.query_params.get("next")))


async def login_submit(request: Request) -> Response:
    """``POST /login``: sign in, or 401/429/403 with a message."""
    state = get_state(request)
    context = context_of(request)
    size = form_size_problem(request, 16 * 1024)
    if size is not None:
        return csrf_refused(request, size, None)
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
    except Exception:  # noqa: BLE001 - an unreadable body is a refused form
        return csrf_refused(request, "the form could not be read", None)
    nonce = None
    raw = request.cookies.get(_NONCE_COOKIE)
    if raw:
        try:
            nonce = URLSafeTimedSerializer(state.secret, salt=_NONCE_SALT).loads(
                raw, max_age=_NONCE_MAX_AGE
            )
        except BadSignature:
            nonce = None
    expected = csrf.form_token(state.secret, "signin", nonce) if isinstance(nonce, str) else None
    origins = csrf.allowed_origin(request, [state.public_origin])
    problem = csrf.request_problem(request, form.get(csrf.FIELD), expected, origins)
    username = form.get("username")
    password = form.get("password")
    username = username.strip() if isinstance(username, str) else ""
    password = password if isinstance(password, str) else ""
    next_path = _safe_next(str(form.get("next") or "/"))
    if problem == csrf.CROSS_SITE:
        return csrf_refused(request, problem, None)
    if problem is not None:  # an expired form, or one a reload sent again: the form anew
        return _login_form(
            request,
            status=403,
            message="This sign-in form had expired or was sent again (a reload): nothing "
            "was checked. Sign in again.",
            username=username,
            next_path=next_path,
        )
    address = client_address(request)
    now = context.clock()
    engine = context.engine

    device_cookie = request.cookies.get(DEVICE_COOKIE)

    def reserve() -> tuple[Attempt, str | None]:
        with transaction(engine) as session:
            stamp = credential_stamp(session, username=username)
            device = device_token(state.secret, device_cookie, username, stamp)
            attempt = reserve_attempt(
                session, username=username, address=address, now=now, device=device
            )
            return attempt, stamp

    def check() -> int | None:
        with transaction(engine, read_only=True) as session:
            return check_password(session, username=username, password=password)

    attempt, stamp = await run_in_threadpool(reserve)
    if attempt.hold is not None:
        response = _login_form(
            request,
            status=429,
            message=held_message(attempt.hold, now),
            username=username,
            next_path=next_path,
        )
        wait = max(1, math.ceil((attempt.hold.until - now).total_seconds()))
        response.headers["retry-after"] = str(wait)
        return response
    operator_id = await run_in_threadpool(check)
    if operator_id is None:
        return _login_form(
            request,
            status=401,
            message="Wrong username or password. Check both and try again.",
            username=username,
            next_path=next_path,
        )
    signed_in = operator_id
    # the session this browser held until now (its cookie is overwritten below) ends
    # here, rather than live on unheld until its idle lifetime
    previous = unsign_token(state.secret, request.cookies.get(cookie_name(state.secure_cookie)))

    def start() -> str:
        with transaction(engine) as session:
            forgive_attempt(session, attempt=attempt, username=username, address=address)
            if previous is not None:
                end_session(session, token=previous, now=now, reason="signed in again")
            return start_session(
                session, operator_id=signed_in, username=username, address=address, now=now
            )

    token = await run_in_threadpool(start)
    response = redirect(next_path)  # ``next`` came with the request: nothing vouched
    set_private_cookie(
        response,
        cookie_name(state.secure_cookie),
        sign_token(state.secret, token),
        max_age=int(state.absolute_lifetime.total_seconds()),
        path="/",
        secure=state.secure_cookie,
    )
    clear_private_cookie(response, _NONCE_COOKIE, path="/login", secure=state.secure_cookie)
    set_private_cookie(
        response,
        DEVICE_COOKIE,
        device_cookie_value(state.secret, username, stamp),
        max_age=int(DEVICE_LIFETIME.total_seconds()),
        path="/login",
        secure=state.secure_cookie,
    )
    return response


_HELD = {
    "pair": "Too many failed sign-ins for this username from this address.",
    "address": "Too many failed sign-ins from this address (for any username).",
    "username": "Too many failed sign-ins for this username from many addresses: someone "
    "may be guessing its password. Sign-in as it is held for browsers that have not "
    "signed in as it before; a browser where you signed in as it before still can.",
    "device": "Too many failed sign-ins from this browser for this username.",
}


def held_message(hold: Hold, now: datetime) -> str:
    """The 429 page's sentence: which limit was reached and when to try again."""
    minutes = max(1, math.ceil((hold.until - now).total_seconds() / 60))
    next_minute = hold.until + timedelta(seconds=59, microseconds=999_999)
    when = next_minute.astimezone(UTC).replace(second=0, microsecond=0).strftime("%H:%M UTC")
    return (
        f"{_HELD[hold.kind]} Nothing was checked. Try again after {when} "
        f"(in {minutes} minute{'' if minutes == 1 else 's'}); ask another operator to "
        "reset your password if you forgot it."
    )


async def logout(page: SignedInPage) -> Response:
    """``POST /logout``: end this session, clear the cookie, back to ``/login``."""
    token = page.viewer.session_token
    now = page.now
    await page.write(lambda s: end_session(s, token=token, now=now))
    response = redirect("/login?" + urlencode({"flash": "signed-out"}), vouch=page.request)
    clear_session_cookie(response, page.state.secure_cookie)
    return response


async def home(page: SignedInPage) -> Response:
    """``GET /``: the operator's organizations, each a link to its Users page, with its
    health at a glance (``receiver.dashboard.glance``)."""
    allowed = page.viewer.organizations

    def work(session: Session) -> list[tuple[Organization, OrgGlance]]:
        rows = list(session.exec(select(Organization).order_by(Organization.id)).all())
        return [(o, org_glance(session, o.id)) for o in rows if allowed is None or o.id in allowed]

    organizations = await page.read(work)
    return page.render("home.html.j2", {"organizations": organizations})


ROUTES = [
    Route("/login", guarded(login_page), methods=["GET"]),
    Route("/login", guarded(login_submit), methods=["POST"]),
    signed_in_route("/logout", logout, methods=["POST"]),
    signed_in_route("/", home),
]
