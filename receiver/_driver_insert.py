"""Private helper of ``receiver.db``: a batch of rows for one INSERT as the DB-API driver
takes them, so an SQLite batch skips SQLAlchemy's per-row work (a third of the cost of
inserting 50,000 agents: ``bench/reconcile.py``) while sending the very values its insert
would: each column's values go through the bind processor of the column's type on the
dialect (a TypeDecorator's ``process_bind_param`` and the JSON serializer included)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection

__all__ = ["driver_rows"]


def driver_rows(
    connection: Connection, table: Table, rows: list[dict[str, Any]]
) -> tuple[str, list[tuple[Any, ...]]] | None:
    """``(INSERT statement with ? placeholders, value tuples)`` for ``rows``, a datetime
    processed once per distinct value and offset (a batch's rows share ``now``).
    ``None`` (use SQLAlchemy's insert) when the rows differ in keys or a column left out
    has a Python-side default. Only for a ``qmark`` driver (SQLite's)."""
    first = rows[0].keys()
    if any(r.keys() != first for r in rows):
        return None
    if any(c.default is not None and c.key not in first for c in table.c):
        return None
    dialect = connection.dialect
    columns = [table.c[k] for k in first]
    processed: list[list[Any]] = []
    for column in columns:
        values = list(map(itemgetter(column.key), rows))
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            values = list(map(_once_per_datetime(process), values))
        processed.append(values)
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in columns)
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    return sql, list(zip(*processed, strict=True))


def _once_per_datetime(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` remembering what it gave for each datetime (with its UTC offset: equal
    instants at other offsets stay apart) and calling it for anything else."""
    seen: dict[tuple[datetime, Any], Any] = {}

    def once(value: Any) -> Any:
        if type(value) is not datetime:
            return process(value)
        key = (value, value.utcoffset())
        if key not in seen:
            seen[key] = process(value)
        return seen[key]

    return once
