"""``agent-provision serve``: run the receiver (webhook + admin API) on uvicorn.

The store is migrated once here, before uvicorn starts its workers; each worker then
builds its own app from the environment (``receiver.app:app_from_environment``), which is
why ``--database-url`` is exported as ``AGENT_PROVISION_DATABASE_URL``. Access logs show
paths without query strings (``receiver._logging``), so the webhook token never reaches
them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

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
    metrics_dir, owned = _metrics_dir()
    public = settings.public_url or f"http://{host}:{port}"
    click.echo(
        f"Serving on http://{host}:{port} (store {_safe_url(settings.database_url)}, "
        f"{workers} worker(s)); Ctrl-C stops it.",
        err=True,
    )
    click.echo(f"Dashboard: {public}/ (operators: agent-provision operator add USERNAME)", err=True)
    try:
        _run(uvicorn, host, port, workers, settings)
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_dir() -> tuple[Path, bool]:
    """The prometheus-client multi-process directory (``receiver.metrics``): the one named
    by ``PROMETHEUS_MULTIPROC_DIR``, emptied of the last run's files, or a new temporary
    one (removed when serve stops). Exported for the workers; returns (dir, created)."""
    # Not imported from receiver.metrics: prometheus-client must first be imported after
    # the variable is set (it picks its value class at import time).
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return path, False
    path = Path(tempfile.mkdtemp(prefix="agent-provision-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def _run(uvicorn: Any, host: str, port: int, workers: int, settings: Any) -> None:
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
