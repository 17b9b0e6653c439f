"""What a failure of the agent store means: transient (the caller answers 503 and the
request is retried) or not, and the :class:`~sf_metadata.errors.StoreUnavailable` (or
:class:`~sf_metadata.errors.TransactionConflict`) that says so without SQL parameters.
Used by ``receiver.engine`` (opening a store) and ``receiver.db`` (migrations and
transactions)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc

from receiver._sqlite_guard import is_unusable_file_error
from sf_metadata.errors import StoreUnavailable, TransactionConflict

__all__ = ["is_transient", "unavailable"]

_TRANSIENT = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)


def unavailable(error: BaseException) -> StoreUnavailable:
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
