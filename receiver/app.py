"""The receiver's Starlette application: the webhook route and the admin JSON API.

:func:`create_app` wires the pieces (settings, engine, clock, session hooks) that the
routes find in ``app.state.context`` (a :class:`~receiver.context.ReceiverContext`, defined
in the leaf module ``receiver/context.py`` and re-exported here). The store is migrated
to the newest schema at startup (lifespan), in a worker thread. :func:`app_from_environment`
is the factory ``agent-provision serve`` hands to uvicorn (``factory=True``) so that
``--workers N`` starts N processes that each build their own engine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from receiver import admin, health, webhook
from receiver._logging import LOGGER_NAME
from receiver.context import Clock, ReceiverContext, utc_now
from receiver.dashboard.site import http_error as dashboard_http_error
from receiver.dashboard.site import routes as dashboard_routes
from receiver.db import make_engine, migrate
from receiver.sessions import SessionHooks
from receiver.settings import Settings

__all__ = [
    "Clock",
    "ReceiverContext",
    "app_from_environment",
    "create_app",
    "utc_now",
]

log = logging.getLogger(LOGGER_NAME)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    hooks: SessionHooks | None = None,
    run_scheduler: bool = True,
) -> Starlette:
    """Build the receiver app.

    - ``settings``: the :class:`Settings` read once (body limit, admin token...).
    - ``engine``: the store's engine; by default ``make_engine(settings.database_url)``
      (then disposed at shutdown).
    - ``clock``: returns aware UTC ``datetime`` (default :func:`utc_now`); tests pass a
      fixed one.
    - ``hooks``: :class:`~receiver.sessions.SessionHooks` told when sessions end.
    - ``run_scheduler``: run the periodic tasks (``receiver/periodic.py``) in a thread
      during the lifespan (tests of other things pass ``False``).

    The store is migrated at startup (lifespan); a store that cannot be reached then
    raises :class:`~sf_metadata.errors.StoreUnavailable` and the server does not start.
    """
    owns_engine = engine is None
    the_engine = engine if engine is not None else make_engine(settings.database_url)
    context = ReceiverContext(
        settings=settings, engine=the_engine, clock=clock or utc_now, hooks=hooks
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(migrate, the_engine)
        log.info("receiver ready (store %s)", the_engine.url.render_as_string(hide_password=True))
        scheduler = None
        if run_scheduler:
            from receiver.periodic import periodic_tasks
            from receiver.scheduler import Scheduler

            scheduler = Scheduler(the_engine, periodic_tasks(settings), clock=context.clock)
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await run_in_threadpool(scheduler.stop)
            if owns_engine:
                the_engine.dispose()

    app = Starlette(
        routes=[*webhook.routes(), *admin.routes(), *health.routes(), *dashboard_routes()],
        exception_handlers={404: dashboard_http_error, 405: dashboard_http_error},
        lifespan=lifespan,
    )
    app.state.context = context
    if settings.trusted_proxies:
        # the client's address behind the listed reverse proxies (README "In production")
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(
            ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies.split(",")
        )
    return app


def app_from_environment() -> Starlette:
    """App factory for ``uvicorn.run("receiver.app:app_from_environment", factory=True)``:
    :class:`Settings` from the environment (``agent-provision serve`` exports its
    ``--database-url`` as ``AGENT_PROVISION_DATABASE_URL`` first)."""
    return create_app(Settings())
