"""Insert agents with the Users search index kept whole: every writer of new ``agent``
rows goes through :func:`insert_agents` (the apply path's ``receiver._provisioning_write``,
and test and bench fixtures that store agents directly).

On SQLite with the search tables (migration ``0010_dashboard_search``), in the caller's
transaction (so in its savepoint, if any): the agents are inserted, their documents are
copied from the view ``agent_search_source`` (the values ``0010``'s insert trigger wrote,
selected by the rowids the insert gave: consecutive up to ``last_insert_rowid()``, as
SQLite gives each new row the largest rowid plus one) and indexed in FTS5, two set-based
statements. So at every commit the index holds exactly what the old per-row triggers
would have written. Updates and deletes of agents are still indexed by ``0010``'s update
and delete triggers.

Why no insert triggers (migration ``0021_search_index_insert`` drops them): FTS5 flushes
its pending terms at the end of every statement, so a trigger's insert wrote an index
segment per row (47,500 agents: 2.6 s of CPU, 0.66 s in bulk; ``0014_search_index_bulk``);
and a trigger that does nothing still runs a trigger program for every row: with
``0014``'s pause gate, 47,500 agents took 1.12 s to insert against 0.38 s with no insert
trigger (``bench/reconcile.py``'s rows, SQLite 3.40), about 13 us an agent, on the
webhook's path too.

On a store downgraded below ``0021`` the insert triggers are back: the batch then closes
their gate (``agent_search_pause``, as the release before did), or each agent would be
indexed twice and the ``INSERT OR REPLACE`` would leave the triggers' FTS5 entries
behind (no delete trigger fires on a replace).

Elsewhere (PostgreSQL: GIN indexes, no triggers; an SQLite build without the trigram
tokenizer: no search tables) this is ``receiver.db.insert_rows``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.db import insert_rows
from receiver.models import Agent

__all__ = ["insert_agents"]

# Whether the store has the search tables, and whether the insert trigger of 0010 is
# there (a store downgraded below 0021): one statement.
_SEARCH_SCHEMA = sa.text(
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' "
    "AND name = 'agent_search_doc'), EXISTS (SELECT 1 FROM sqlite_master "
    "WHERE type = 'trigger' AND name = 'agent_search_agent_ai')"
)
_PAUSE = sa.text("INSERT INTO agent_search_pause (id) VALUES (1)")
_RESUME = sa.text("DELETE FROM agent_search_pause")
# After the agents' insert, in one statement: the rowid of its last row (the batch's rows
# are consecutive: SQLite gives each new row the largest rowid plus one) and the last
# document.
_LAST_ROWS = sa.text(
    "SELECT last_insert_rowid(), (SELECT coalesce(max(id), 0) FROM agent_search_doc)"
)
# INSERT OR REPLACE, as the trigger of 0010 did: a stale document of a reused agent id is
# replaced.
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


def insert_agents(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (``agent`` column values, as ``receiver.db.insert_rows`` takes
    them) and index them for the Users search (module docstring). Raises what the
    session raises (``IntegrityError`` for a duplicate crm id or username key: then,
    inside a savepoint, nothing of the batch is left)."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        insert_rows(session, Agent, rows)
        return
    has_search, has_trigger = connection.execute(_SEARCH_SCHEMA).one()
    if not has_search:
        insert_rows(session, Agent, rows)
        return
    if has_trigger:
        connection.execute(_PAUSE)
    try:
        insert_rows(session, Agent, rows)
        last_agent, last_doc = connection.execute(_LAST_ROWS).one()
        connection.execute(_FILL_DOCS, {"after": last_agent - len(rows)})
        connection.execute(_FILL_INDEX, {"after": last_doc})
    finally:
        if has_trigger:
            connection.execute(_RESUME)
