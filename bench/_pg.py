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

import sqlalchemy as sa
from sqlalchemy.engine import make_url

__all__ = ["create_database", "drop_database", "set_outage", "is_postgres"]


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
