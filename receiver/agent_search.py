"""The Users search index kept whole by the writer of agents: every writer of new ``agent``
rows goes through :func:`insert_agents`, and every update of agents is followed by
:func:`reindex_agents` (the apply path's ``receiver._provisioning_write``; test and bench
fixtures that store agents directly use :func:`insert_agents` too).

On SQLite with the search tables (migration ``0010_dashboard_search``), in the caller's
transaction (so in its savepoint, if any), set-based statements:

- :func:`insert_agents`: the agents are inserted, their documents are copied from the view
  ``agent_search_source`` (the values ``0010``'s insert trigger wrote, selected by the
  rowids the insert gave: consecutive up to ``last_insert_rowid()``, as SQLite gives each
  new row the largest rowid plus one) and indexed in FTS5: two statements after the insert;
- :func:`reindex_agents`: the FTS5 entries of the updated agents whose name or username
  no longer equals the view's are deleted with the old values, their documents rewritten
  from the view and indexed again: four statements, as ``0010``'s update triggers did row
  by row.

So at every commit the index holds exactly what the old per-row triggers would have
written. Deletes are still indexed by ``0010``'s delete triggers. :func:`repair_index`
(the daily ``search-index`` task, ``receiver.maintenance``) indexes what a writer that does
none of this left behind: a process of an earlier release still serving the migrated
store, or a fixture.

Why no insert and update triggers (migration ``0021_search_index_by_writer`` drops them):
FTS5 flushes its pending terms at the end of every statement, so a trigger wrote an index
segment per row (47,500 new agents: 2.6 s of CPU, 0.66 s in bulk, ``0014_search_index_bulk``;
100 updated agents over 100,000 stored: 78 ms a message, 25 ms without the triggers); and a
trigger that does nothing still runs a trigger program for every row: with ``0014``'s pause
gate, 47,500 agents took 1.12 s to insert against 0.38 s with no insert trigger
(``bench/reconcile.py``'s rows, SQLite 3.40), about 13 us an agent, on the webhook's path too.

On a store downgraded below ``0021`` the triggers are back: a batch then closes the insert
triggers' gate (``agent_search_pause``, as the release before did), or each agent would be
indexed twice and the ``INSERT OR REPLACE`` would leave the triggers' FTS5 entries behind
(no delete trigger fires on a replace); and :func:`reindex_agents` leaves updates to the
update triggers.

Elsewhere (PostgreSQL: GIN indexes, no triggers; an SQLite build without the trigram
tokenizer: no search tables) :func:`insert_agents` is ``receiver.db.insert_rows`` and
:func:`reindex_agents` does nothing.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from receiver.db import insert_rows, transaction
from receiver.models import Agent

__all__ = ["insert_agents", "reindex_agents", "repair_index"]

# Whether the store has the search tables, and whether the insert and update triggers of
# 0010 are there (a store downgraded below 0021): one statement.
_SEARCH_SCHEMA = sa.text(
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' "
    "AND name = 'agent_search_doc'), EXISTS (SELECT 1 FROM sqlite_master "
    "WHERE type = 'trigger' AND name = 'agent_search_agent_ai'), EXISTS (SELECT 1 FROM "
    "sqlite_master WHERE type = 'trigger' AND name = 'agent_search_agent_au')"
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
    has_search, has_trigger, _ = connection.execute(_SEARCH_SCHEMA).one()
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


# Over the documents of the agents in :ids (a JSON array of agent ids), against what the
# view gives for each now (the columns 0010's update trigger rewrote). First the FTS5
# entries of those whose name or username changed are deleted, with the old values (what
# the index holds); then those documents are rewritten, giving their ids back to be
# indexed again; then any other column that changed is rewritten (never expected: an
# agent keeps its organization and crm id, and the name key follows the name).
_IN_IDS = "d.agent_id IN (SELECT value FROM json_each(:ids))"
_RENAMED = "(d.name IS NOT s.name OR d.username IS NOT s.username)"
# In rowid order: FTS5 keeps its pending terms sorted by rowid and writes them out as a
# segment whenever a smaller rowid than the last one comes, so rowids in the order of the
# message (random) wrote a segment per agent (100 updates over 100,000 agents: 15.6 ms to
# unindex and 13.6 ms to index again in the order given, 0.9 and 0.7 ms in rowid order).
_UNINDEX = sa.text(
    "INSERT INTO agent_search (agent_search, rowid, name, username) "
    "SELECT 'delete', d.id, d.name, d.username FROM agent_search_doc AS d "
    f"JOIN agent_search_source AS s ON s.agent_id = d.agent_id WHERE {_IN_IDS} AND {_RENAMED} "
    "ORDER BY d.id"
)
_REWRITE = (
    "UPDATE agent_search_doc AS d SET organization_id = s.organization_id, "
    "name_key = s.name_key, crm_id = s.crm_id, name = s.name, username = s.username "
    "FROM agent_search_source AS s WHERE s.agent_id = d.agent_id AND " + _IN_IDS + " AND "
)
_REWRITE_RENAMED = sa.text(_REWRITE + _RENAMED + " RETURNING id")
_REWRITE_OTHER = sa.text(
    _REWRITE + "(d.organization_id IS NOT s.organization_id OR d.name_key IS NOT s.name_key "
    "OR d.crm_id IS NOT s.crm_id)"
)
_INDEX = sa.text(
    "INSERT INTO agent_search (rowid, name, username) "
    "SELECT id, name, username FROM agent_search_doc "
    "WHERE id IN (SELECT value FROM json_each(:docs)) ORDER BY id"
)


def reindex_agents(session: Session, agent_ids: list[str]) -> int:
    """After the agents ``agent_ids`` were updated (in this transaction): bring their
    search documents and FTS5 entries up to date (module docstring: four statements,
    ``UPDATE ... FROM ... RETURNING``, SQLite 3.35 or later); returns how many documents
    were indexed again (0 where there is nothing to do: PostgreSQL, no search tables, a
    store whose update triggers did it). Raises what the session raises."""
    if not agent_ids:
        return 0
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return 0
    has_search, _, has_update_trigger = connection.execute(_SEARCH_SCHEMA).one()
    if not has_search or has_update_trigger:
        return 0
    ids = {"ids": json.dumps(agent_ids)}
    connection.execute(_UNINDEX, ids)
    renamed = [row[0] for row in connection.execute(_REWRITE_RENAMED, ids)]
    connection.execute(_REWRITE_OTHER, ids)
    if renamed:
        connection.execute(_INDEX, {"docs": json.dumps(renamed)})
    return len(renamed)


# Agents without a document, or whose document differs from the view: (agent id, whether
# the document is missing).
_UNINDEXED = sa.text(
    "SELECT s.agent_id, d.agent_id IS NULL FROM agent_search_source AS s "
    "LEFT JOIN agent_search_doc AS d ON d.agent_id = s.agent_id "
    "WHERE d.agent_id IS NULL OR d.organization_id IS NOT s.organization_id "
    "OR d.name_key IS NOT s.name_key OR d.crm_id IS NOT s.crm_id OR d.name IS NOT s.name "
    "OR d.username IS NOT s.username"
)
_FILL_MISSING = sa.text(
    "INSERT OR IGNORE INTO agent_search_doc "
    "(agent_id, organization_id, name_key, crm_id, name, username) "
    "SELECT agent_id, organization_id, name_key, crm_id, name, username "
    "FROM agent_search_source WHERE agent_id IN (SELECT value FROM json_each(:ids)) "
    "ORDER BY agent_rowid"
)


def repair_index(engine: Engine) -> int:
    """Index every agent whose search document is missing or differs from the view: one
    scan of the agents in a read-only transaction (so no writer waits on it), then, when
    it found any, one write transaction for those agents alone: the missing documents
    written and indexed, the others reindexed (:func:`reindex_agents`, which checks them
    again under the lock). Returns how many agents the scan found; 0 where there is
    nothing to do (PostgreSQL, no search tables, a store whose triggers index). Raises
    ``StoreUnavailable``."""
    if engine.dialect.name != "sqlite":
        return 0
    with transaction(engine, read_only=True) as session:
        connection = session.connection()
        has_search, has_insert_trigger, has_update_trigger = connection.execute(
            _SEARCH_SCHEMA
        ).one()
        if not has_search or has_insert_trigger or has_update_trigger:
            return 0
        found = connection.execute(_UNINDEXED).all()
    if not found:
        return 0
    missing = [agent_id for agent_id, absent in found if absent]
    stale = [agent_id for agent_id, absent in found if not absent]
    with transaction(engine) as session:
        connection = session.connection()
        if missing:
            (last_doc,) = connection.execute(
                sa.text("SELECT coalesce(max(id), 0) FROM agent_search_doc")
            ).one()
            # OR IGNORE: a writer may have indexed one since the scan
            connection.execute(_FILL_MISSING, {"ids": json.dumps(missing)})
            connection.execute(_FILL_INDEX, {"after": last_doc})
        reindex_agents(session, stale)
    return len(found)
