"""The Reconcile page (``/organizations/{organization}/reconcile``). Reconcile itself is
not part of this build yet: the page says so and offers no button that would do nothing.
The reconcile work replaces this module (same ``ROUTES`` name)."""

from __future__ import annotations

from starlette.responses import Response

from receiver.dashboard.framework import OrgPage, org_route

__all__ = ["ROUTES"]


async def reconcile_page(page: OrgPage) -> Response:
    """What exists: nothing yet."""
    return page.render("reconcile.html.j2", {}, nav="reconcile")


ROUTES = [org_route("/reconcile", reconcile_page)]
