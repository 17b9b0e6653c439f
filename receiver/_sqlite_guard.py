"""Private: keep a SQLite engine on the file its path names, and let no store error outlive
its cause (issue 12, items 1 and 2).

- **Never a new empty store behind the server's back.** Once the engine has seen its file
  (it existed when the engine was built, or a first connection created it), every later
  connection opens it with the URI ``mode=rw`` (https://www.sqlite.org/uri.html), which
  fails ("unable to open database file") instead of creating an empty file when the store
  was deleted.
- **The file the path names.** Each connection records the ``(st_dev, st_ino)`` of the path
  when it opens. At every checkout (every transaction of ``receiver.db.transaction``: each
  opens a new Session), the path is ``stat``-ed again: gone, or another file (replaced by a
  cleanup job or a wrong volume mount), the pool drops every connection opened before and
  opens a new one. A deleted store then fails to open, so the request answers 503 and
  nothing is acknowledged into an unlinked file; a replaced one is used from then on.
- **Read-only, then writable again.** SQLite silently opens a connection read-only when
  the file cannot be written (permissions, read-only mount). Such a connection is marked;
  at checkout, once the file is writable again, it is replaced by a fresh one. And any
  error that says the file is unusable (read-only, I/O error, cannot open, not a database)
  counts as a disconnect (SQLAlchemy ``handle_error`` ``is_disconnect``): the connection
  and the pool's older ones are discarded, so a healed store is used at once.
- **The write-ahead log the path names** (ATTACK finding 2). A cleanup job deleting
  ``*.db-wal`` / ``*.db-shm`` leaves every open connection writing into the unlinked WAL:
  the commits are invisible to any new process and gone after a crash. Each connection
  records the ``(st_dev, st_ino)`` of ``PATH-wal`` and ``PATH-shm`` it opened (SQLite opens
  both when the connection is made). At every checkout, and once more after every write
  transaction committed (:func:`confirm_write_landed`, still inside the writer queue, before
  any Ack), they are ``stat``-ed again; gone or another file: ``PRAGMA
  wal_checkpoint(FULL)`` through that connection copies everything the old WAL holds
  into the main file (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint), the pool's
  idle connections are closed and the others invalidated, and the work goes on with a new
  connection (new WAL and index at the path). A checkpoint that cannot finish (a reader
  holds an old snapshot past the busy timeout) fails the transaction: 503, no Ack (the
  retry is recognised by its notification ids). A new connection is refused (503) while
  this process still holds a deleted ``-wal``/``-shm`` (Linux ``/proc/self/fd``): it would
  share the process's old, unlinked WAL index with a new WAL file. A connection that was
  in a transaction when the WAL was deleted checkpoints when it is checked in.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

__all__ = ["confirm_write_landed", "install_file_guard", "is_unusable_file_error"]

_log = logging.getLogger("agent_provision.receiver.db")

_IDENTITY = "agent_provision_store_file"
_WAL_FILES = "agent_provision_wal_files"
#: Engines guarded by :func:`install_file_guard` (SQLite file stores).
_GUARDED: weakref.WeakSet[Engine] = weakref.WeakSet()
_OPENED_READ_ONLY = "agent_provision_opened_read_only"

#: Driver messages (sqlite3.OperationalError / DatabaseError) that mean the file itself is
#: unusable for now, as opposed to a lock held by another writer.
_UNUSABLE = (
    "readonly database",
    "disk i/o error",
    "unable to open database file",
    "file is not a database",
    "database disk image is malformed",
    "no such table",
)


def is_unusable_file_error(error: BaseException) -> bool:
    """True for a sqlite3 error saying the store file cannot be used as it is now."""
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    text = str(error).lower()
    return type(error) is sqlite3.DatabaseError or any(m in text for m in _UNUSABLE)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _wal_files(path: Path) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """The identities of ``PATH-wal`` and ``PATH-shm`` now (None: absent)."""
    wal, shm = _sidecars(path)
    return _identity(wal), _identity(shm)


def _holds_deleted_sidecar(path: Path) -> bool:
    """True when this process has a ``PATH-wal``/``PATH-shm`` open that was unlinked
    (Linux: the ``/proc/self/fd`` link ends with `` (deleted)``); False elsewhere."""
    names = {str(p) + " (deleted)" for p in _sidecars(path)}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") in names:
                return True
        except OSError:
            continue
    return False


#: Serialises this process's checkpoints of a lost WAL: SQLite answers SQLITE_BUSY at once,
#: without the busy handler, to a checkpoint while another one runs.
_CHECKPOINTS = threading.Lock()
_CHECKPOINT_ATTEMPTS = 100
_CHECKPOINT_PAUSE_S = 0.02


def _checkpoint(dbapi_connection: Any, path: Path) -> bool:
    """Copy what the WAL this connection holds into the main file; True when complete.
    A checkpoint running elsewhere (another worker) is waited for, about 2 s at most."""
    row = (1, -1, -1)
    with _CHECKPOINTS:
        for _attempt in range(_CHECKPOINT_ATTEMPTS):
            try:
                row = dbapi_connection.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
            except sqlite3.Error as error:
                _log.error("checkpoint of the lost WAL of %s failed: %s", path, error)
                return False
            if row[0] == 0:
                break
            time.sleep(_CHECKPOINT_PAUSE_S)
    busy, log_frames, done = row
    # -1: this connection has no WAL open (it never read since it connected): nothing to copy
    complete = busy == 0 and log_frames == done
    _log.warning(
        "the write-ahead log of the SQLite store %s was deleted or replaced while serving; "
        "checkpointed its %s frames into the store (%s)",
        path,
        log_frames,
        "complete" if complete else f"INCOMPLETE: {done} copied, the store stayed busy",
    )
    return complete


def confirm_write_landed(engine: Engine) -> None:
    """Called after a write transaction committed (before its Ack): a checkout runs the
    WAL check of the module docstring, so a commit that went into a WAL deleted meanwhile is
    checkpointed into the main file first. Raises a SQLAlchemy ``OperationalError`` when
    that checkpoint could not finish. Does nothing for an engine without the guard."""
    if engine not in _GUARDED:
        return
    with engine.connect():
        pass


def install_file_guard(engine: Engine, path: Path) -> None:
    """Install the guards of the module docstring on ``engine`` (a SQLite file store at the
    absolute ``path``)."""
    seen = {"exists": path.exists()}
    _GUARDED.add(engine)

    @event.listens_for(engine, "do_connect")
    def _open_existing_only(
        _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        if _holds_deleted_sidecar(path):
            raise sqlite3.OperationalError(
                f"the write-ahead log of the SQLite store {path} was deleted; waiting for "
                "this process's connections to the old one to close"
            )
        if seen["exists"] and not cparams.get("uri"):
            cargs[0] = path.as_uri() + "?mode=rw"
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _remember_file(_dbapi_connection: Any, record: Any) -> None:
        seen["exists"] = True
        record.info[_IDENTITY] = _identity(path)
        record.info[_OPENED_READ_ONLY] = not os.access(path, os.W_OK)
        record.info[_WAL_FILES] = _wal_files(path)

    @event.listens_for(engine, "checkout")
    def _still_the_same_file(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        now = _identity(path)
        if now is None or now != record.info.get(_IDENTITY):
            raise exc.InvalidatePoolError(f"the SQLite store {path} was deleted or replaced")
        expected, now_wal = record.info.get(_WAL_FILES), _wal_files(path)
        if expected == (None, None):
            # No WAL when it connected (a new store): it opens the one there now.
            record.info[_WAL_FILES] = expected = now_wal
        if expected != now_wal:
            complete = _checkpoint(dbapi_connection, path)
            engine.pool.dispose()  # close the idle connections holding the old WAL now
            if not complete:
                raise sqlite3.OperationalError(
                    f"the write-ahead log of the SQLite store {path} was deleted or "
                    "replaced and could not be checkpointed yet"
                )
            raise exc.InvalidatePoolError(f"the write-ahead log of {path} was replaced")
        if record.info.get(_OPENED_READ_ONLY) and os.access(path, os.W_OK):
            raise exc.DisconnectionError(f"the SQLite store {path} is writable again")

    @event.listens_for(engine, "checkin")
    def _checkpoint_a_lost_wal(dbapi_connection: Any, record: Any) -> None:
        # A connection coming back from a transaction that began before the WAL was
        # deleted: copy what it still holds into the main file now, not at its next checkout.
        expected = record.info.get(_WAL_FILES)
        if dbapi_connection is not None and expected not in (None, (None, None)):
            if expected != _wal_files(path):
                _checkpoint(dbapi_connection, path)

    @event.listens_for(engine, "handle_error")
    def _unusable_is_a_disconnect(context: Any) -> None:
        if is_unusable_file_error(context.original_exception):
            context.is_disconnect = True
