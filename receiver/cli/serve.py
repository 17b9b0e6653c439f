"""``agent-provision serve``: run the receiver (webhook + admin API) on uvicorn.

The store is migrated once here, before uvicorn starts its workers; each worker then
builds its own app from the environment (``receiver.app:app_from_environment``), which is
why ``--database-url`` is exported as ``AGENT_PROVISION_DATABASE_URL``. Access logs show
paths without query strings (``receiver._logging``), so the webhook token never reaches
them.
"""

from __future__ import annotations

import os

import click

from receiver._logging import uvicorn_log_config
from receiver.cli._options import database_url_option, settings_from
from receiver.db import make_engine, migrate

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes."
)
@database_url_option
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve the Outbound Message receiver and the admin API."""
    import uvicorn

    settings = settings_from(ctx)
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    os.environ["AGENT_PROVISION_DATABASE_URL"] = settings.database_url
    click.echo(
        f"Serving on http://{host}:{port} (store {_safe_url(settings.database_url)}, "
        f"{workers} worker(s)); Ctrl-C stops it.",
        err=True,
    )
    uvicorn.run(
        "receiver.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=uvicorn_log_config(settings.log_level),
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
    )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return "(unparsable URL)"
