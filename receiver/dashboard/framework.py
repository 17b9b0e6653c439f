"""How a dashboard page is written: sign-in, organization access, CSRF; drawing it is
:mod:`receiver.dashboard.rendering` (re-exported here: a page module imports this one).

Adding a page (say ``receiver/dashboard/reconcile.py``)::

    from receiver.dashboard.framework import OrgPage, org_route, redirect

    async def reconcile_page(page: OrgPage) -> Response:
        if page.form is not None:                      # a POST: its CSRF token was checked
            plan_id = await page.write(lambda s: make_plan(s, page.organization.id))
            return redirect(page.url("/reconcile", flash="planned"), vouch=page.request)  # PRG
        last = await page.read(lambda s: last_plan(s, page.organization.id))
        return page.render("reconcile.html.j2", {"plan": last}, nav="reconcile")

    ROUTES = [org_route("/reconcile", reconcile_page, methods=["GET", "POST"])]

then add the module's ``ROUTES`` to ``receiver/dashboard/site.py``. The template extends
the base layout and puts the CSRF token in each form::

    {% extends "base.html.j2" %}
    {% block content %}
    <form method="post" action="{{ org_url('/reconcile') }}">
      {{ csrf_field() }}
      <button type="submit" name="do" value="plan">Plan</button>
    </form>
    {% endblock %}

:func:`org_route` paths are relative to ``/organizations/{organization}``. For every
request it runs, in this order: the sign-in check (a signed-out GET is redirected to
``/login``, a signed-out POST too, nothing changed); the organization check (an
organization the operator does not manage answers exactly as an unknown one: 404); for a
POST the CSRF check (403, nothing changed; ``page.form`` then holds the parsed form);
then the handler. :class:`~sf_metadata.errors.StoreUnavailable` becomes a 503 page and any
other error a 500 page, neither showing details (they go to the process log).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver._logging import LOGGER_NAME
from receiver.context import context_of
from receiver.dashboard import csrf
from receiver.dashboard.auth import (
    Viewer,
    clear_session_cookie,
    cookie_name,
    load_viewer,
    record_check,
    unsign_token,
)
from receiver.dashboard.rendering import (
    FLASH_MESSAGES,
    FLASH_PROBLEMS,
    client_address,
    csv_cell,
    error_page,
    not_found_page,
    org_url,
    redirect,
    render,
    shown_address,
    vouched,
)
from receiver.dashboard.state import DashboardState, get_state
from receiver.db import transaction
from receiver.models import Organization
from sf_metadata.errors import InvalidSalesforceId, StoreUnavailable
from sf_metadata.ids import USER, typed_id

if TYPE_CHECKING:
    from receiver.context import ReceiverContext

__all__ = [
    "FLASH_MESSAGES",
    "FLASH_PROBLEMS",
    "OrgPage",
    "SignedInPage",
    "client_address",
    "csv_cell",
    "error_page",
    "form_size_problem",
    "guarded",
    "org_route",
    "redirect",
    "render",
    "shown_address",
    "signed_in_route",
    "viewer_of",
    "vouched",
]

log = logging.getLogger(LOGGER_NAME)
T = TypeVar("T")


def _context(request: Request) -> ReceiverContext:
    return context_of(request)


def _now(request: Request) -> datetime:
    return _context(request).clock()


async def _viewer(request: Request) -> tuple[Viewer | None, str | None]:
    state = get_state(request)
    token = unsign_token(state.secret, request.cookies.get(cookie_name(state.secure_cookie)))
    if token is None:
        forged = bool(request.cookies.get(cookie_name(state.secure_cookie)))
        return None, "invalid" if forged else None
    engine = _context(request).engine
    now = _now(request)

    def work() -> tuple[Viewer | None, str | None]:
        with transaction(engine, read_only=True) as session:
            check = load_viewer(
                session,
                token=token,
                now=now,
                idle=state.idle_lifetime,
                absolute=state.absolute_lifetime,
            )
        if check.write is not None:
            with transaction(engine) as session:
                record_check(session, token=token, check=check, now=now)
        return check.viewer, check.why

    viewer, why = await run_in_threadpool(work)
    return viewer, (why or "invalid") if viewer is None else None


async def viewer_of(request: Request) -> Viewer | None:
    """The signed-in operator of ``request``, or ``None`` (for pages outside the routes,
    such as the 404 page, which only show who is signed in)."""
    viewer, _ = await _viewer(request)
    return viewer


def _to_login(request: Request, why: str | None) -> Response:
    query: dict[str, str] = {}
    if request.method == "GET":
        query["next"] = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if why is not None:
        query["ended"] = "1"
    response = redirect("/login" + ("?" + urlencode(query) if query else ""))
    if why is not None:
        clear_session_cookie(response, get_state(request).secure_cookie)
    return response


@dataclass(slots=True)
class SignedInPage:
    """What a signed-in handler gets: the ``request``, the ``viewer``, the parsed ``form``
    of a POST (its CSRF token already checked; ``None`` for GET), the request time ``now``."""

    request: Request
    viewer: Viewer
    form: FormData | None
    now: datetime

    @property
    def context(self) -> ReceiverContext:
        """The app's :class:`~receiver.context.ReceiverContext` (engine, settings, clock)."""
        return _context(self.request)

    @property
    def state(self) -> DashboardState:
        """The dashboard's key, templates and cookie settings."""
        return get_state(self.request)

    @property
    def actor(self) -> str:
        """Who acts, as the store records it: ``operator:<username>`` (the Features
        page's history, a job's and a plan's "by")."""
        return f"operator:{self.viewer.username}"

    async def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a read-only transaction, in a worker thread."""
        engine = self.context.engine

        def run() -> T:
            with transaction(engine, read_only=True) as session:
                return work(session)

        return await run_in_threadpool(run)

    async def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a write transaction, in a worker thread."""
        engine = self.context.engine

        def run() -> T:
            with transaction(engine) as session:
                return work(session)

        return await run_in_threadpool(run)

    def render(
        self, template: str, values: Mapping[str, Any] | None = None, *, status: int = 200
    ) -> Response:
        """:func:`render` with this page's viewer."""
        return render(self.request, template, values, status=status, viewer=self.viewer)

    def error(self, status: int, title: str, message: str, hint: str | None = None) -> Response:
        """:func:`error_page` with this page's viewer."""
        return error_page(self.request, status, title, message, viewer=self.viewer, hint=hint)


@dataclass(slots=True)
class OrgPage(SignedInPage):
    """A :class:`SignedInPage` of one ``organization`` the viewer manages."""

    organization: Organization

    def url(self, path: str = "", **query: object) -> str:
        """``/organizations/{organization}{path}?{query}`` (empty values left out)."""
        return org_url(self.organization.id, path, **query)

    def error(self, status: int, title: str, message: str, hint: str | None = None) -> Response:
        """:func:`error_page` with this page's viewer and organization (its menu)."""
        return error_page(
            self.request,
            status,
            title,
            message,
            viewer=self.viewer,
            hint=hint,
            organization=self.organization,
        )

    def user_id(self) -> str | Response:
        """The path's ``crm_id`` as a canonical 18-character User id, or the 404 page that
        says it is none (an agent's page and its ``Sync now``)."""
        raw = str(self.request.path_params["crm_id"])
        try:
            return typed_id(raw, USER)
        except InvalidSalesforceId:
            return self.error(
                404,
                "User not found",
                f"{shown_address(raw, 18)} is not a Salesforce User id (005…, 15 or 18 "
                "characters).",
                hint="Open the agent from the Users page.",
            )

    def render(
        self,
        template: str,
        values: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        nav: str | None = None,
    ) -> Response:
        """:func:`render` with this page's viewer and organization menu."""
        return render(
            self.request,
            template,
            values,
            status=status,
            viewer=self.viewer,
            organization=self.organization,
            nav=nav,
        )


#: Largest form body the dashboard reads (its forms are a few hundred bytes).
MAX_FORM_BYTES = 64 * 1024


def form_size_problem(request: Request, limit: int = MAX_FORM_BYTES) -> str | None:
    """Why the body is not read: no ``Content-Length`` (browsers always send one for a
    form) or one above ``limit``; ``None`` when it may be read."""
    raw = request.headers.get("content-length", "")
    if not raw.isdigit():
        return "the form has no length"
    if int(raw) > limit:
        return "the form is too large"
    return None


async def _checked_form(request: Request, viewer: Viewer) -> tuple[FormData | None, str | None]:
    state = get_state(request)
    size = form_size_problem(request)
    if size is not None:
        return None, size
    try:
        form = await request.form(max_files=0, max_fields=200, max_part_size=64 * 1024)
    except Exception:  # noqa: BLE001 - any unparsable body is a refused form
        return None, "the form could not be read"
    expected = csrf.form_token(state.secret, "session", viewer.session_token)
    origins = csrf.allowed_origin(request, [state.public_origin])
    problem = csrf.request_problem(request, form.get(csrf.FIELD), expected, origins)
    return (form, None) if problem is None else (None, problem)


def csrf_refused(request: Request, problem: str, viewer: Viewer | None) -> Response:
    """The 403 page of a refused form."""
    return error_page(
        request,
        403,
        "Form refused",
        f"Nothing was changed: {problem}.",
        viewer=viewer,
        hint="Go back, reload the page and send the form again from this site.",
    )


def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except StoreUnavailable as error:
            log.warning("dashboard %s %s: %s", request.method, request.url.path, error.message)
            return error_page(
                request,
                503,
                "Store unavailable",
                "The agent store cannot be reached right now; nothing was changed.",
                hint="Retry in a moment.",
            )
        except Exception:
            log.exception("dashboard %s %s failed", request.method, request.url.path)
            return error_page(
                request,
                500,
                "Something went wrong",
                "The page could not be shown; the details are in the server's log.",
                hint="Retry; if it keeps failing, tell whoever runs this service.",
            )

    return endpoint


def signed_in_route(
    path: str,
    handler: Callable[[SignedInPage], Awaitable[Response]],
    *,
    methods: Sequence[str] = ("GET",),
) -> Route:
    """A route for signed-in operators (not tied to an organization)."""

    async def run(request: Request) -> Response:
        viewer, why = await _viewer(request)
        if viewer is None:
            return _to_login(request, why)
        form = None
        if request.method == "POST":
            form, problem = await _checked_form(request, viewer)
            if problem is not None:
                return csrf_refused(request, problem, viewer)
        return await handler(SignedInPage(request, viewer, form, _now(request)))

    return Route(path, guarded(run), methods=list(methods))


def org_route(
    path: str,
    handler: Callable[[OrgPage], Awaitable[Response]],
    *,
    methods: Sequence[str] = ("GET",),
) -> Route:
    """A route under ``/organizations/{organization}`` (see the module docstring)."""

    async def run(request: Request) -> Response:
        viewer, why = await _viewer(request)
        if viewer is None:
            return _to_login(request, why)
        name = request.path_params["organization"]
        organization = None
        if viewer.can_access(name) and len(name) <= 63 and name.isprintable():
            engine = _context(request).engine

            def load() -> Organization | None:
                with transaction(engine, read_only=True) as session:
                    return session.get(Organization, name)

            organization = await run_in_threadpool(load)
        if organization is None:
            return not_found_page(request, viewer, name)
        form = None
        if request.method == "POST":
            form, problem = await _checked_form(request, viewer)
            if problem is not None:
                return csrf_refused(request, problem, viewer)
        return await handler(OrgPage(request, viewer, form, _now(request), organization))

    return Route("/organizations/{organization}" + path, guarded(run), methods=list(methods))
