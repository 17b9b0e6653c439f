"""Health endpoints (CONTRACT section 5), no sign-in, no secret:

- ``GET /healthz``: 200 ``ok`` while the process runs (nothing else is checked);
- ``GET /readyz``: 200 ``ready`` when the store answers and is at the newest migration,
  else 503 with one line saying which (``store unavailable`` / ``store not migrated``);
- ``GET /metrics``: the Prometheus text format (``receiver.metrics``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from receiver import metrics
from receiver.context import context_of

if TYPE_CHECKING:
    from receiver.context import ReceiverContext

__all__ = ["head_revision", "routes"]


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision of the shipped migrations."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from receiver.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _context(request: Request) -> ReceiverContext:
    return context_of(request)


async def healthz(_request: Request) -> Response:
    """The process is up."""
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    """The store answers and is migrated."""
    from receiver.db import current_revision

    engine = _context(request).engine

    def check() -> str | None:
        try:
            revision = current_revision(engine)
        except Exception:  # noqa: BLE001 - any failure to answer is "unavailable"
            return "store unavailable"
        return None if revision == head_revision() else "store not migrated"

    problem = await run_in_threadpool(check)
    if problem is not None:
        return PlainTextResponse(problem + "\n", status_code=503)
    return PlainTextResponse("ready\n")


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus text format."""
    engine = _context(request).engine
    body = await run_in_threadpool(metrics.render, engine)
    return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    """The three routes."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
