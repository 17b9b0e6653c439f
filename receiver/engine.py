"""Engines of the agent store (see ``receiver.db`` for the whole picture).

- :func:`make_engine` builds the engine for a SQLAlchemy URL. SQLite (the default,
  ``sqlite:///agent_provision.db`` relative to the working directory): the parent directory
  is created, WAL journal, ``busy_timeout`` 30 s, foreign keys on, and every write
  transaction starts with ``BEGIN IMMEDIATE`` so concurrent writers (threads or worker
  processes) queue on the database lock instead of failing mid-transaction
  (https://www.sqlite.org/lang_transaction.html); a transaction begun with the
  :data:`READ_ONLY` execution option begins a plain deferred ``BEGIN``. PostgreSQL:
  ``postgresql+psycopg://`` (psycopg 3; ``postgres://`` and ``postgresql://`` are rewritten
  to it), ``pool_pre_ping``, and every session set to ``TIME ZONE 'UTC'`` whatever the
  server's or database's default (a far-future SystemModstamp such as 9999-12-31T23:30Z,
  rendered in a zone east of UTC, would fall past year 9999, which Python cannot read). A
  SQLite file store is guarded by ``receiver._sqlite_guard``: a deleted or replaced file,
  or a read-only one, never keeps serving from a stale connection (503 instead of an Ack
  into an unlinked file).
- :func:`open_existing` opens a store that is already there, at the newest schema, for
  commands that only read: it creates no file or directory and migrates nothing
  (``receiver.store_probe``).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL
from sqlmodel import create_engine

from receiver._sqlite_guard import install_file_guard
from receiver.settings import psycopg_url
from receiver.store_errors import is_transient, unavailable
from receiver.store_probe import check_revision, missing_store, sqlite_revision
from sf_metadata.errors import StoreUnavailable

__all__ = [
    "READ_ONLY",
    "SQLITE_BUSY_TIMEOUT_S",
    "make_engine",
    "normalise_url",
    "open_existing",
    "sqlite_database_path",
]

#: Execution option naming a read-only transaction (SQLite: plain deferred ``BEGIN``).
READ_ONLY = "agent_provision_read_only"
#: SQLite's busy timeout, in seconds (``receiver.db`` bounds its writer queue with it too).
SQLITE_BUSY_TIMEOUT_S = 30


def normalise_url(url: str | URL) -> URL:
    """The URL with ``postgres://`` / ``postgresql://`` rewritten to psycopg 3.

    Raises :class:`~sf_metadata.errors.UsageError` for a string that is not a URL.
    """
    from sf_metadata.errors import Setting, UsageError

    if isinstance(url, str):
        try:
            return make_url(psycopg_url(url))
        except exc.ArgumentError:
            raise UsageError(
                "the database URL is not a SQLAlchemy URL (such as sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST/DB)",
                setting=Setting.DATABASE_URL,
            ) from None
    return url


def sqlite_database_path(url: str | URL) -> Path | None:
    """The absolute file path of a SQLite URL, or ``None`` (in-memory, or not SQLite)."""
    u = normalise_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    database = u.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url`` (a SQLAlchemy URL string or object); see the module docstring.

    ``kwargs`` go to :func:`sqlalchemy.create_engine`. Raises
    :class:`~sf_metadata.errors.UsageError` for an unparsable URL, an unsupported backend or
    driver (e.g. ``nosuch://x``, ``mysql://...`` without its driver), or a SQLite directory
    that cannot be created; connecting happens later.
    """
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        path = sqlite_database_path(u)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                from sf_metadata.errors import Setting, UsageError

                raise UsageError(
                    f"cannot create the directory of the SQLite store {path}: "
                    f"{error.strerror or error}",
                    setting=Setting.DATABASE_URL,
                ) from None
            u = u.set(database=str(path))
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        connect_args.setdefault("check_same_thread", False)
        engine = _create_engine(u, connect_args=connect_args, **kwargs)
        _install_sqlite_events(engine, wal=path is not None)
        if path is not None:
            install_file_guard(engine, path)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = _create_engine(u, **kwargs)
    if engine.dialect.name == "postgresql":
        _install_postgresql_events(engine)
    return engine


def open_existing(url: str | URL, **kwargs: Any) -> Engine:
    """An engine on the store at ``url`` that is already there and at the newest schema
    (for commands that only read): no file, directory or table is created, nothing is
    migrated. ``kwargs`` as for :func:`make_engine`.

    Raises :class:`~sf_metadata.errors.StoreNotFound` (no SQLite file, or no schema),
    :class:`~sf_metadata.errors.StoreOutdated` (an older schema),
    :class:`~sf_metadata.errors.UsageError` (an unusable URL) and
    :class:`~sf_metadata.errors.StoreUnavailable` (it cannot be reached or read).
    """
    u = normalise_url(url)
    path = sqlite_database_path(u)
    if path is not None:
        try:
            check_revision(sqlite_revision(path), str(path))
        except sqlite3.Error as error:
            raise StoreUnavailable(
                f"the store {path} cannot be read ({type(error).__name__}: {error})"
            ) from None
        return make_engine(u, **kwargs)
    engine = make_engine(u, **kwargs)
    try:
        check_revision(_stored_revision(engine), _shown_url(u))
    except BaseException:
        engine.dispose()
        raise
    return engine


def _stored_revision(engine: Engine) -> str | None:
    """The ``alembic_version`` of the store (``None``: no such table or row), read without
    alembic. Raises :class:`~sf_metadata.errors.StoreUnavailable` when it cannot be reached."""
    from sqlalchemy import inspect

    if engine.url.get_backend_name() == "sqlite" and sqlite_database_path(engine.url) is None:
        raise missing_store(_shown_url(engine.url))  # in memory: a new, empty store
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except exc.SQLAlchemyError as error:
        if is_transient(error):
            raise unavailable(error) from None
        raise
    return None if value is None else str(value)


def _install_postgresql_events(engine: Engine) -> None:
    """Every connection's session in UTC (``SET TIME ZONE 'UTC'``, committed so it holds for
    the session; a per-session setting, so it also works behind a pooler that refuses
    startup options)."""

    @event.listens_for(engine, "connect")
    def _utc_session(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()

    @event.listens_for(engine, "handle_error")
    def _read_only_is_a_disconnect(context: Any) -> None:
        # A standby (after a failover) answers 25006 to every write on this connection:
        # drop it and the pool's older ones, so new connections find the new primary.
        if getattr(context.original_exception, "sqlstate", None) == "25006":
            context.is_disconnect = True


def _json_dumps(value: Any) -> str:
    """``value`` as JSON text (orjson: compact, UTF-8, no NaN)."""
    return orjson.dumps(value).decode()


def _create_engine(u: URL, **kwargs: Any) -> Engine:
    """:func:`sqlmodel.create_engine`, an unknown dialect or missing driver as UsageError.

    ``hide_parameters``: SQL parameters (names, e-mail addresses, phone numbers of users)
    never appear in an error's text, so never in a log."""
    kwargs.setdefault("hide_parameters", True)
    # JSON columns (the agent JSON) through orjson: several times cheaper per row than
    # the json module on the webhook's write path; same JSON values (issue 11 item 2).
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    try:
        return create_engine(u, **kwargs)
    except (exc.NoSuchModuleError, exc.ArgumentError, ModuleNotFoundError):
        from sf_metadata.errors import Setting, UsageError

        raise UsageError(
            f"unsupported database URL {_shown_url(u)}: the store is SQLite (sqlite:///PATH) "
            "or PostgreSQL (postgresql+psycopg://USER@HOST/DB)",
            setting=Setting.DATABASE_URL,
        ) from None


def _shown_url(u: URL) -> str:
    """The URL without its password (never shown), quoted."""
    return repr(u.render_as_string(hide_password=True))


def _install_sqlite_events(engine: Engine, *, wal: bool) -> None:
    """Take transaction control from pysqlite and begin write transactions IMMEDIATE
    (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL" for pysqlite)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                _enable_wal(cursor)
                # FULL: a commit is on disk before the Ack, even across a power loss
                # (NORMAL in WAL mode may lose the last commits; SQLite "PRAGMA synchronous").
                cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL once per database file. Changing the journal mode needs an exclusive
    lock and SQLite answers "database is locked" at once, without the busy handler, while
    other connections open the same new file; so retry until the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
