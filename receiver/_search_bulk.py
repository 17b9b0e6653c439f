"""Private helper of ``receiver.provisioning``: insert many agents on SQLite with the
Users search index filled in two set-based statements instead of by its per-row
triggers (migration ``0014_search_index_bulk``; FTS5 wrote an index segment per
trigger-inserted row: 47,500 agents cost 2.6 s of CPU that way, 0.66 s in bulk).

In the caller's transaction (so in its savepoint, if any): the one row of
``agent_search_pause`` is inserted (the insert triggers of ``agent`` and
``agent_search_doc`` then do nothing), the agents are inserted, their documents are
copied from the view ``agent_search_source`` (the values the trigger writes, selected by
the rowids the insert gave: consecutive up to ``last_insert_rowid()``, as SQLite gives
each new row the largest rowid plus one) and indexed, and the row is deleted again, also when a statement fails. No other connection
ever sees the row: SQLite has one writer at a time and readers see committed data only.
So at every commit the index holds exactly what the triggers would have written.

Elsewhere (PostgreSQL, an SQLite build without the search tables, fewer than
:data:`BULK_ROWS` agents) this is ``receiver.db.insert_rows`` (the triggers index them).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session

from receiver.db import insert_rows
from receiver.models import Agent

__all__ = ["BULK_ROWS", "insert_agents"]

#: From this many agents in one insert the index is filled in bulk: every batch, an
#: Outbound Message of one notification included (issue 11). The bulk path costs six
#: statements more than the triggers (about 0.5-0.8 ms in process); each row the triggers
#: index costs an FTS5 segment flush, so from about 15 rows it is cheaper (in process,
#: SQLite 3.40, load 5: 10 rows 2.0 ms by the triggers against 2.6 ms in bulk, 20 rows
#: 4.1 against 3.4, 100 rows 13.3 against 8.1; the triggers were about 10 ms of a
#: 100-create message's CPU). One path for every size keeps a message's statement count
#: independent of its length (``tests/receiver/test_provisioning.py``).
BULK_ROWS = 1

_HAS_PAUSE = sa.text(
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_search_pause'"
)
# After the agents' insert, in one statement: the rowid of its last row (the batch's rows
# are consecutive: SQLite gives each new row the largest rowid plus one) and the last
# document (the paused triggers wrote none).
_LAST_ROWS = sa.text(
    "SELECT last_insert_rowid(), (SELECT coalesce(max(id), 0) FROM agent_search_doc)"
)
_PAUSE = sa.text("INSERT INTO agent_search_pause (id) VALUES (1)")
_RESUME = sa.text("DELETE FROM agent_search_pause")
# INSERT OR REPLACE, as the trigger: a stale document of a reused agent id is replaced.
_FILL_DOCS = sa.text(
    "INSERT OR REPLACE INTO agent_search_doc "
    "(agent_id, organization_id, name_key, crm_id, name, username) "
    "SELECT agent_id, organization_id, name_key, crm_id, name, username "
    "FROM agent_search_source WHERE agent_rowid > :after ORDER BY agent_rowid"
)
_FILL_INDEX = sa.text(
    "INSERT INTO agent_search (rowid, name, username) "
    "SELECT id, name, username FROM agent_search_doc WHERE id > :after"
)


def _bulk(connection: Connection, rows: list[dict[str, Any]]) -> bool:
    return (
        len(rows) >= BULK_ROWS
        and connection.dialect.name == "sqlite"
        and connection.execute(_HAS_PAUSE).first() is not None
    )


def insert_agents(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (``agent`` column values, as ``insert_rows`` takes them) with the
    search index kept whole (module docstring). Raises what the session raises."""
    connection = session.connection()
    if not _bulk(connection, rows):
        insert_rows(session, Agent, rows)
        return
    connection.execute(_PAUSE)
    try:
        insert_rows(session, Agent, rows)
        last_agent, last_doc = connection.execute(_LAST_ROWS).one()
        connection.execute(_FILL_DOCS, {"after": last_agent - len(rows)})
        connection.execute(_FILL_INDEX, {"after": last_doc})
    finally:
        connection.execute(_RESUME)
