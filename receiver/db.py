"""Migrations and transactions of the agent store; its engines are ``receiver.engine``
(re-exported here), the meaning of its failures ``receiver.store_errors``.

- :func:`make_engine`, :func:`open_existing`, :func:`normalise_url` and
  :func:`sqlite_database_path`: see ``receiver.engine`` (SQLite in WAL mode, write
  transactions ``BEGIN IMMEDIATE``, the file guard; PostgreSQL sessions in UTC).
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
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, exc, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel

from receiver._driver_insert import driver_rows
from receiver._sqlite_guard import confirm_write_landed
from receiver._sqlite_queue import WriteQueue
from receiver.engine import (
    READ_ONLY,
    SQLITE_BUSY_TIMEOUT_S,
    make_engine,
    normalise_url,
    open_existing,
    sqlite_database_path,
)
from receiver.store_errors import is_transient, unavailable
from sf_metadata.errors import StoreUnavailable

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

#: Arbitrary constant key of the PostgreSQL advisory lock taken around migrations.
_MIGRATION_LOCK_KEY = 0x61617070  # "aapp"
#: How long a writer waits for the SQLite writer queue in all (``receiver.engine``).
_SQLITE_BUSY_TIMEOUT_S = SQLITE_BUSY_TIMEOUT_S


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
            raise unavailable(error) from None
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
    bind = _read_only_bind(engine) if read_only else engine
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
            raise unavailable(error) from None
        raise
    finally:
        if lock is not None:
            lock.release()
    for callback in after:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the transaction is committed: log, go on
            _log.exception("after-transaction callback %r failed", callback)


#: Attribute of an engine holding its read-only variant (made by :func:`_read_only_bind`).
_READ_ONLY_BIND = "_agent_provision_read_only_bind"


def _read_only_bind(engine: Engine) -> Engine:
    """``engine`` with the read-only execution option, made once per engine and kept on
    it (every webhook request's token check opens a read-only transaction)."""
    bind: Engine | None = getattr(engine, _READ_ONLY_BIND, None)
    if bind is None:
        bind = engine.execution_options(**{READ_ONLY: True})
        setattr(engine, _READ_ONLY_BIND, bind)
    return bind


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
