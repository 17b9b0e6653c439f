"""Every dashboard route, for ``receiver.app.create_app``; a page module adds its
``ROUTES`` to :func:`routes` (see ``receiver.dashboard.framework`` for how to write one)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from receiver.dashboard import (
    crm,
    features,
    log,
    log_replay,
    login,
    reconcile,
    salesforce,
    users,
)
from receiver.dashboard.state import templates_dir

__all__ = ["routes"]


async def stylesheet(_request: Request) -> Response:
    """``GET /static/dashboard/style.css``: the one stylesheet."""
    return FileResponse(
        templates_dir() / "style.css",
        media_type="text/css",
        headers={"cache-control": "public, max-age=300", "x-content-type-options": "nosniff"},
    )


def routes() -> list[BaseRoute]:
    """The dashboard's routes (``/``, ``/login``, ``/logout``, ``/organizations/...``,
    the stylesheet)."""
    return [
        Route("/static/dashboard/style.css", stylesheet, methods=["GET"]),
        *login.ROUTES,
        *users.ROUTES,
        *features.ROUTES,
        *log.ROUTES,
        *log_replay.ROUTES,
        *crm.ROUTES,
        *salesforce.ROUTES,
        *reconcile.ROUTES,
    ]
