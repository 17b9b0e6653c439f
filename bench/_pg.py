"""PostgreSQL helpers for the bench and the fault/soak tests: a fresh database per run, and
a real outage of it (connections refused and existing ones terminated).

Outage: ``ALTER DATABASE … WITH ALLOW_CONNECTIONS false`` refuses every new connection to
that database (superusers included, as for ``template0``) and ``pg_terminate_backend``
drops the open ones; ``ALLOW_CONNECTIONS true`` brings it back. This works on a shared
server without stopping the cluster (PostgreSQL docs, ALTER DATABASE and
https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-ADMIN-SIGNAL).
"""

from __future__ import annotations

import secrets
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import make_url

__all__ = [
    "LockWaitSampler",
    "backend_cpu_seconds",
    "create_database",
    "drop_database",
    "is_postgres",
    "set_outage",
]


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store."""
    return make_url(url).get_backend_name() == "postgresql"


def _admin(server_url: str) -> sa.Engine:
    url = make_url(server_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def create_database(server_url: str, *, prefix: str = "bench") -> str:
    """Create an empty database on the server of ``server_url``; return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    engine = _admin(server_url)
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(server_url).set(database=name)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _terminate(conn: sa.Connection, name: str) -> None:
    conn.execute(
        sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :name AND pid <> pg_backend_pid()"
        ),
        {"name": name},
    )


def set_outage(server_url: str, database_url: str, down: bool) -> None:
    """Take the database of ``database_url`` down (refuse and drop connections) or back up."""
    name = make_url(database_url).database
    engine = _admin(server_url)
    with engine.connect() as conn:
        conn.execute(
            sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(not down).lower()}')
        )
        if down:
            _terminate(conn, str(name))
    engine.dispose()


def drop_database(server_url: str, database_url: str) -> None:
    """Drop the database of ``database_url`` (its connections are terminated first)."""
    name = str(make_url(database_url).database)
    engine = _admin(server_url)
    with engine.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
        _terminate(conn, name)
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


class LockWaitSampler:
    """Lock waits of one database's sessions, sampled from ``pg_locks`` (``waitstart``,
    PostgreSQL 14+) every ``interval`` seconds in a thread: row locks, advisory locks,
    anything a backend waits for. Each wait (backend, ``waitstart``) counts once, with
    the longest duration seen (so a wait is seen up to ``interval`` short, and waits
    shorter than ``interval`` may be missed). ``waits_ms`` lists them after :meth:`stop`.
    """

    def __init__(self, server_url: str, database_url: str, interval: float = 0.004) -> None:
        self._engine = _admin(server_url)
        self._database = str(make_url(database_url).database)
        self._interval = interval
        self._seen: dict[tuple[int, str], float] = {}
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LockWaitSampler:
        """Start sampling."""
        self._running.set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        query = sa.text(
            "SELECT l.pid, l.waitstart::text, extract(epoch FROM clock_timestamp() - l.waitstart)"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND l.waitstart IS NOT NULL AND a.datname = :name"
        )
        with self._engine.connect() as conn:
            while self._running.is_set():
                for pid, start, seconds in conn.execute(query, {"name": self._database}):
                    key = (int(pid), str(start))
                    self._seen[key] = max(self._seen.get(key, 0.0), float(seconds) * 1000)
                time.sleep(self._interval)

    def stop(self) -> list[float]:
        """Stop; return the waits in milliseconds."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._engine.dispose()
        return self.waits_ms

    @property
    def waits_ms(self) -> list[float]:
        """Every wait seen, in milliseconds."""
        return sorted(self._seen.values())


def backend_cpu_seconds(database_url: str) -> float:
    """User + system CPU seconds of the PostgreSQL backends now connected to the database
    of ``database_url`` on this machine (psutil; 0 if unavailable)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    name = str(make_url(database_url).database)
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if cmdline.startswith("postgres:") and f" {name} " in f" {cmdline} ":
                times = proc.cpu_times()
                total += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total
