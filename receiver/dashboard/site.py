"""Every dashboard route, for ``receiver.app.create_app``; a page module adds its
``ROUTES`` to :func:`_page_routes` (see ``receiver.dashboard.framework`` for how to write
one).

The page modules (and what they import: reconcile, the deployer, requests, Jinja) load at
the first request that none of the receiver's own routes (webhook, admin API, health) took,
not with the app: a receiver that only takes webhooks, and every test that starts
``serve`` for them, does not pay about 0.3 s of CPU for a dashboard it never shows. The
import runs once, on the event loop, before that first dashboard request is answered.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

__all__ = ["http_error", "routes"]


def _page_routes() -> list[BaseRoute]:
    from receiver.dashboard import (
        crm,
        features,
        log,
        log_replay,
        login,
        reconcile,
        salesforce,
        sync_user,
        users,
    )
    from receiver.dashboard.state import templates_dir

    css = templates_dir() / "style.css"
    icon = templates_dir() / "icon.svg"

    async def stylesheet(_request: Request) -> Response:
        """``GET /static/dashboard/style.css``: the one stylesheet."""
        return FileResponse(
            css,
            media_type="text/css",
            headers={"cache-control": "public, max-age=300", "x-content-type-options": "nosniff"},
        )

    async def favicon(_request: Request) -> Response:
        """``GET /static/dashboard/icon.svg`` (and ``/favicon.ico``, which browsers ask for
        on pages that name no icon, such as a JSON answer): the tab's icon."""
        return FileResponse(
            icon,
            media_type="image/svg+xml",
            headers={"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"},
        )

    return [
        Route("/static/dashboard/style.css", stylesheet, methods=["GET"]),
        Route("/static/dashboard/icon.svg", favicon, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        *login.ROUTES,
        *users.ROUTES,
        *features.ROUTES,
        *log.ROUTES,
        *log_replay.ROUTES,
        *crm.ROUTES,
        *salesforce.ROUTES,
        *reconcile.ROUTES,
        *sync_user.ROUTES,
    ]


class _DashboardRoutes(BaseRoute):
    """One route standing for all of :func:`_page_routes`, built at the first
    :meth:`matches` (or :meth:`url_path_for`) call: it matches exactly where one of them
    does (so 404, 405 and the router's slash redirects are unchanged) and hands the request
    to them through a :class:`~starlette.routing.Router` of its own."""

    def __init__(self) -> None:
        self._router: Router | None = None

    @property
    def router(self) -> Router:
        if self._router is None:
            self._router = Router(routes=_page_routes())
        return self._router

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] | None = None
        for route in self.router.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, child_scope
            if match is Match.PARTIAL and partial is None:
                partial = (match, child_scope)
        return partial or (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        return self.router.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the Router matches again, as the app's own router did; the page route handles it
        await self.router.app(scope, receive, send)


#: Paths that are not the dashboard's: the webhook and the JSON API (``/v2/...``) and the
#: probes keep Starlette's plain-text 404 and 405.
_NOT_PAGES = ("/v2/", "/healthz", "/readyz", "/metrics")


async def http_error(request: Request, exc: Exception) -> Response:
    """The app's handler of the router's 404 and 405: for a dashboard address a page
    saying what happened, with the pages' security headers; for the webhook, the API and
    the probes Starlette's plain text, as before."""
    from starlette.exceptions import HTTPException
    from starlette.responses import PlainTextResponse

    assert isinstance(exc, HTTPException)
    path = request.url.path
    if path.startswith(_NOT_PAGES) or exc.status_code not in (404, 405):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    from receiver.dashboard.framework import viewer_of
    from receiver.dashboard.rendering import error_page, shown_address

    try:
        viewer = await viewer_of(request)
    except Exception:  # noqa: BLE001 - the store down: the page, without who is signed in
        viewer = None
    shown = shown_address(path)  # "/ Your session expired, sign in at ..." stays an address
    if exc.status_code == 405:
        response = error_page(
            request,
            405,
            "Not a page",
            f"Nothing was changed: {shown} takes a form sent from its page, not a visit.",
            viewer=viewer,
            hint="Go back and press the page's button.",
        )
    else:
        response = error_page(
            request,
            404,
            "Page not found",
            f"There is no page at {shown}.",
            viewer=viewer,
            hint="Start from the home page: each organization's pages are under "
            "/organizations/NAME/users.",
        )
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def routes() -> list[BaseRoute]:
    """The dashboard's routes (``/``, ``/login``, ``/logout``, ``/organizations/...``,
    the stylesheet), as one route that imports the page modules when first asked."""
    return [_DashboardRoutes()]
