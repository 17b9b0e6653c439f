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
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

__all__ = ["install_file_guard", "is_unusable_file_error"]

_IDENTITY = "agent_provision_store_file"
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


def install_file_guard(engine: Engine, path: Path) -> None:
    """Install the guards of the module docstring on ``engine`` (a SQLite file store at the
    absolute ``path``)."""
    seen = {"exists": path.exists()}

    @event.listens_for(engine, "do_connect")
    def _open_existing_only(
        _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        if seen["exists"] and not cparams.get("uri"):
            cargs[0] = path.as_uri() + "?mode=rw"
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _remember_file(_dbapi_connection: Any, record: Any) -> None:
        seen["exists"] = True
        record.info[_IDENTITY] = _identity(path)
        record.info[_OPENED_READ_ONLY] = not os.access(path, os.W_OK)

    @event.listens_for(engine, "checkout")
    def _still_the_same_file(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        now = _identity(path)
        if now is None or now != record.info.get(_IDENTITY):
            raise exc.InvalidatePoolError(f"the SQLite store {path} was deleted or replaced")
        if record.info.get(_OPENED_READ_ONLY) and os.access(path, os.W_OK):
            raise exc.DisconnectionError(f"the SQLite store {path} is writable again")

    @event.listens_for(engine, "handle_error")
    def _unusable_is_a_disconnect(context: Any) -> None:
        if is_unusable_file_error(context.original_exception):
            context.is_disconnect = True
