"""Engine, migrations and transactions of the agent store.

- :func:`make_engine` builds the engine for a SQLAlchemy URL. SQLite (the default,
  ``sqlite:///agent_provision.db`` relative to the working directory): the parent directory
  is created, WAL journal, ``busy_timeout`` 30 s, foreign keys on, and every write
  transaction starts with ``BEGIN IMMEDIATE`` so concurrent writers (threads or worker
  processes) queue on the database lock instead of failing mid-transaction
  (https://www.sqlite.org/lang_transaction.html). PostgreSQL: ``postgresql+psycopg://``
  (psycopg 3; ``postgres://`` and ``postgresql://`` are rewritten to it), ``pool_pre_ping``,
  and every session set to ``TIME ZONE 'UTC'`` whatever the server's or database's default
  (a far-future SystemModstamp such as 9999-12-31T23:30Z, rendered in a zone east of UTC,
  would fall past year 9999, which Python cannot read). A SQLite file store is guarded by
  ``receiver._sqlite_guard``: a deleted or replaced file, or a read-only one, never keeps
  serving from a stale connection (503 instead of an Ack into an unlinked file).
- :func:`open_existing` opens a store that is already there, at the newest schema, for
  commands that only read: it creates no file or directory and migrates nothing
  (``receiver.store_probe``).
- :func:`migrate` runs ``alembic upgrade head`` from the migrations shipped in the package
  (``receiver/migrations``, no ``alembic.ini`` needed), in one transaction holding a lock
  (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``pg_advisory_xact_lock``), so several
  processes may call it at once.
- :func:`transaction` yields a :class:`sqlmodel.Session` inside one transaction, commits at
  the end, and maps transient database failures to
  :class:`~sf_metadata.errors.StoreUnavailable` (nothing of the transaction is applied).
  :func:`after_transaction` registers work (the session-ended hooks) that runs once the
  transaction committed and the SQLite writer queue was released.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Table, event, exc, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL
from sqlmodel import Session, SQLModel, create_engine

from receiver._driver_insert import driver_rows
from receiver._sqlite_guard import (
    confirm_write_landed,
    install_file_guard,
    is_unusable_file_error,
)
from receiver._sqlite_queue import WriteQueue
from receiver.settings import psycopg_url
from receiver.store_probe import check_revision, missing_store, sqlite_revision
from sf_metadata.errors import StoreUnavailable, TransactionConflict

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIR",
    "after_transaction",
    "current_revision",
    "head_revision",
    "is_at_head",
    "is_transient",
    "make_engine",
    "migrate",
    "normalise_url",
    "open_existing",
    "sqlite_database_path",
    "transaction",
]

_log = logging.getLogger("agent_provision.receiver.db")

#: The alembic script directory, shipped as package data.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Execution option naming a read-only transaction (SQLite: plain deferred ``BEGIN``).
_READ_ONLY = "agent_provision_read_only"
#: Arbitrary constant key of the PostgreSQL advisory lock taken around migrations.
_MIGRATION_LOCK_KEY = 0x61617070  # "aapp"
_SQLITE_BUSY_TIMEOUT_S = 30


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
        connect_args.setdefault("timeout", _SQLITE_BUSY_TIMEOUT_S)
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
            raise _unavailable(error) from None
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
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_S * 1000}")
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
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL once per database file. Changing the journal mode needs an exclusive
    lock and SQLite answers "database is locked" at once, without the busy handler, while
    other connections open the same new file; so retry until the busy timeout."""
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_S
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


def _alembic_config(connection: Connection | None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``), idempotently.

    Safe to call from several processes at once (the lock is described in the module
    docstring). Raises :class:`~sf_metadata.errors.StoreUnavailable` when the store cannot
    be reached.
    """
    from alembic import command

    try:
        if is_at_head(engine):
            return
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            command.upgrade(_alembic_config(connection), "head")
    except exc.SQLAlchemyError as error:
        if is_transient(error):
            raise _unavailable(error) from None
        raise


@functools.cache
def head_revision() -> str | None:
    """The newest revision of ``receiver/migrations`` (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def is_at_head(engine: Engine) -> bool:
    """Whether the store's schema is the newest (one read of ``alembic_version``; an empty
    store or one without the table is not). Raises ``sqlalchemy.exc.SQLAlchemyError``."""
    return current_revision(engine) == head_revision()


def current_revision(engine: Engine) -> str | None:
    """The store's alembic revision, ``None`` for an empty store."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


_TRANSIENT = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)


def _unavailable(error: BaseException) -> StoreUnavailable:
    """A StoreUnavailable naming the driver's first message line, never SQL parameters."""
    orig = getattr(error, "orig", None)
    detail = str(orig if orig is not None else error).strip().splitlines()
    first = detail[0][:200] if detail else type(error).__name__
    text_ = f"the store is unavailable ({type(error).__name__}: {first}); retry"
    if getattr(orig, "sqlstate", None) in _CONFLICT_SQLSTATES:
        return TransactionConflict(text_)
    return StoreUnavailable(text_)


#: deadlock_detected and serialization_failure: the transaction may simply run again.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


#: PostgreSQL SQLSTATEs that an admin or a failover fixes while Salesforce retries:
#: read_only_sql_transaction (a primary that became a standby, or
#: ``default_transaction_read_only``), and the insufficient-resources class 53.
_TRANSIENT_SQLSTATES = ("25006", "53")


def is_transient(error: BaseException) -> bool:
    """Transient: the connection or lock failed, the SQLite file is unusable (not a
    database / corrupt / read-only), or PostgreSQL refuses writes for now
    (:data:`_TRANSIENT_SQLSTATES`), which an admin must fix while Salesforce retries."""
    if isinstance(error, _TRANSIENT):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    if isinstance(orig, sqlite3.DatabaseError):
        return is_unusable_file_error(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES)


#: ``Session.info`` key of the callables to run after the transaction (:func:`transaction`).
_AFTER = "agent_provision_after_transaction"


def after_transaction(session: Session, callback: Callable[[], None]) -> bool:
    """Run ``callback()`` once the transaction of ``session`` (opened by :func:`transaction`)
    has committed and released the SQLite writer queue; never if it rolls back. Returns
    False (and does nothing) for a session that :func:`transaction` did not open. A
    callback's exception is logged and the next callback still runs."""
    pending = session.info.get(_AFTER)
    if pending is None:
        return False
    pending.append(callback)
    return True


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One transaction: yields a Session (``expire_on_commit=False``), commits when the block
    ends, rolls back when it raises; then, after a commit, runs the callbacks registered
    with :func:`after_transaction` (outside the writer queue).

    ``read_only=True`` begins a deferred transaction on SQLite (readers do not queue behind
    writers); it changes nothing on PostgreSQL.

    Raises :class:`~sf_metadata.errors.StoreUnavailable` for a lost connection, lock or busy
    timeout (SQLite writers: 30 s in all, in this process's queue and then the other
    processes' ``flock``), serialization failure or deadlock (SQLAlchemy
    ``OperationalError``, ``InterfaceError``, pool timeout, invalidated connection), a
    SQLite file deleted, replaced or read-only, from the block or the commit; the original
    error is not chained, so no SQL parameter reaches a log. Other errors propagate
    unchanged after the rollback.
    """
    bind = engine.execution_options(**{_READ_ONLY: True}) if read_only else engine
    lock = None if read_only else _sqlite_write_lock(engine)
    try:
        if lock is not None and not lock.acquire(timeout=_SQLITE_BUSY_TIMEOUT_S):
            raise StoreUnavailable(
                f"the SQLite store stayed locked by other writers for {_SQLITE_BUSY_TIMEOUT_S} s"
            )
    except OSError as error:
        raise StoreUnavailable(f"cannot open the SQLite writer lock file: {error}") from None
    after: list[Callable[[], None]] = []
    try:
        with Session(bind, expire_on_commit=False) as session:
            session.info[_AFTER] = after
            with session.begin():
                yield session
        if lock is not None:
            confirm_write_landed(engine)
    except exc.SQLAlchemyError as error:
        if is_transient(error):
            raise _unavailable(error) from None
        raise
    finally:
        if lock is not None:
            lock.release()
    for callback in after:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the transaction is committed: log, go on
            _log.exception("after-transaction callback %r failed", callback)


_WRITE_QUEUES: weakref.WeakKeyDictionary[Engine, WriteQueue] = weakref.WeakKeyDictionary()
_WRITE_QUEUES_GUARD = threading.Lock()


def _sqlite_write_lock(engine: Engine) -> WriteQueue | None:
    """The queue of this SQLite store's write transactions (``receiver._sqlite_queue``), or
    None for other backends (PostgreSQL queues on the organization row lock)."""
    if engine.dialect.name != "sqlite":
        return None
    with _WRITE_QUEUES_GUARD:
        queue = _WRITE_QUEUES.get(engine)
        if queue is None:
            path = sqlite_database_path(engine.url)
            lock_path = path.with_name(path.name + "-writer.lock") if path is not None else None
            queue = _WRITE_QUEUES[engine] = WriteQueue(lock_path)
        return queue


def insert_rows(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT of ``rows`` into ``model``'s table through SQLAlchemy Core
    (the ORM bulk path costs several times more per row on the hot path). On SQLite,
    rows of one set of keys go through the driver's executemany with each column's own
    bind processing (``receiver._driver_insert``), the same values SQLAlchemy would send."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    if connection.dialect.name == "sqlite" and len(rows) > 1:
        prepared = driver_rows(connection, table, rows)
        if prepared is not None:
            connection.exec_driver_sql(*prepared)
            return
    connection.execute(table.insert(), rows)
