"""``agent-provision serve``: run the receiver (webhook + admin API) on uvicorn.

The store is migrated once here, before uvicorn starts its workers; each worker then
builds its own app from the environment (``receiver.app:app_from_environment``), which is
why ``--database-url`` is exported as ``AGENT_PROVISION_DATABASE_URL``. Access logs show
paths without query strings (``receiver._logging``), so the webhook token never reaches
them.

A store that should exist and does not is never silently replaced by an empty one: for a
SQLite URL whose file is missing while the files kept beside a store are there (its key
file ``<store>.key``, its writer lock ``<store>-writer.lock``, or its ``-wal`` journal),
``serve`` refuses to start (exit 2) unless ``--new-store`` is given: the store was deleted
or its volume is not mounted. Any new, empty store (SQLite or PostgreSQL) is announced on
standard error.

A port another process listens on is reported before anything else, as "port N is busy"
(exit 2, a usage error: choose another ``--port``), not as uvicorn's startup failure (its
exit status 3 is the CLI's "Salesforce authentication"); a server that still fails to
start exits 1.

With ``--workers`` above 1, new connections are spread over the workers
(``receiver.accept_balance``: the workers share one listening socket, and a burst of
keep-alive connections would otherwise often land on one of them). Connections are bounded
per worker (``receiver.http_limits``): ``--header-timeout``
(``AGENT_PROVISION_HEADER_TIMEOUT``) and ``--max-connections``
(``AGENT_PROVISION_MAX_CONNECTIONS``) are exported for the workers, and the soft
file-descriptor limit is raised to the hard one (at most 65,536) first.
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
from receiver.db import current_revision, make_engine, migrate, sqlite_database_path
from receiver.settings import Settings
from sf_metadata.errors import AgentProvisionError, UsageError

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes."
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds a connection may take to send its request headers "
    "[default: AGENT_PROVISION_HEADER_TIMEOUT or 10].",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=16),
    default=None,
    help="Open connections per worker [default: AGENT_PROVISION_MAX_CONNECTIONS, else the "
    "file-descriptor limit minus a reserve, at most 4096].",
)
@click.option(
    "--new-store",
    is_flag=True,
    help="Start even though the SQLite store is missing while its key file or lock is there "
    "(creates a new, empty store).",
)
@database_url_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    header_timeout: float | None,
    max_connections: int | None,
    new_store: bool,
) -> None:
    """Serve the Outbound Message receiver and the admin API."""
    import uvicorn

    from receiver.http_limits import raise_file_limit

    settings = settings_from(ctx)
    check_port_free(host, port)
    _check_expected_store(settings, new_store=new_store)
    engine = make_engine(settings.database_url)
    try:
        was_empty = current_revision(engine) is None
        migrate(engine)
    finally:
        engine.dispose()
    if was_empty:
        click.echo(
            f"NOTE: the store {_safe_url(settings.database_url)} was empty: created a NEW, "
            "EMPTY store (no organizations, no agents). If you expected data, stop and fix "
            "--database-url.",
            err=True,
        )
    os.environ["AGENT_PROVISION_DATABASE_URL"] = settings.database_url
    if header_timeout is not None:
        os.environ["AGENT_PROVISION_HEADER_TIMEOUT"] = str(header_timeout)
    if max_connections is not None:
        os.environ["AGENT_PROVISION_MAX_CONNECTIONS"] = str(max_connections)
    raise_file_limit()
    metrics_dir, owned = _metrics_dir()
    public = settings.public_url or f"http://{host}:{port}"
    click.echo(
        f"Serving on http://{host}:{port} (store {_safe_url(settings.database_url)}, "
        f"{workers} worker(s)); Ctrl-C stops it.",
        err=True,
    )
    click.echo(
        f"Dashboard: {public}/ (people sign in as operators: see agent-provision operator)",
        err=True,
    )
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


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`UsageError` when ``host:port`` cannot be listened on (busy, or not
    allowed), binding the way uvicorn does (``SO_REUSEADDR``) and letting go at once."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} is busy (another process listens on {host}:{port}): stop "
                    "it, or choose another port with --port N"
                ) from error
            raise UsageError(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
            ) from error


def _run(uvicorn: Any, host: str, port: int, workers: int, settings: Any) -> None:
    from receiver.http_limits import BACKLOG

    try:
        _uvicorn_run(uvicorn, host, port, workers, settings, BACKLOG)
    except SystemExit as stop:
        if stop.code not in (None, 0):
            # uvicorn's STARTUP_FAILURE (3) is not the CLI's exit 3 (authentication)
            raise AgentProvisionError("the server could not start (see the log above)") from stop
        raise


def _uvicorn_run(
    uvicorn: Any, host: str, port: int, workers: int, settings: Any, backlog: int
) -> None:
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
        http="receiver.http_limits:LimitedAutoProtocol",
        backlog=backlog,
        # Several workers share the listening socket: spread new connections over them
        # (receiver.accept_balance); one worker keeps uvicorn's default loop.
        loop="receiver.accept_balance:BalancedEventLoop" if workers > 1 else "auto",
    )


def _check_expected_store(settings: Settings, *, new_store: bool) -> None:
    """Raise :class:`UsageError` for a missing SQLite store that left its companions."""
    path = sqlite_database_path(settings.database_url)
    if path is None or path.exists() or new_store:
        return
    companions = [
        p
        for p in (
            Path(f"{path}.key"),
            Path(f"{path}-writer.lock"),
            Path(f"{path}-wal"),
        )
        if p.exists()
    ]
    if companions:
        names = ", ".join(p.name for p in companions)
        raise UsageError(
            f"the SQLite store {path} does not exist, but {names} beside it show that a "
            "store was there: it was deleted, moved, or its volume is not mounted. Restore "
            "it, or pass --new-store to start with a new, empty store"
        )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return "(unparsable URL)"
