"""SQLite: a bulk insert of agents fills the Users search index in two set-based
statements instead of through its per-row triggers (issue 10: reconcile's full run).

The triggers of ``0010_dashboard_search`` that insert a search document
(``agent_search_agent_ai``) and index it (``agent_search_doc_ai``) gain a ``WHEN`` clause:
they do nothing while the one-row table ``agent_search_pause`` holds a row. A writer of
many agents (``receiver._search_bulk``) inserts that row, inserts the agents, fills
``agent_search_doc`` from the view ``agent_search_source`` (the same values the trigger
writes) and ``agent_search`` from the new documents, and deletes the row again, all in
its own transaction: no other connection ever sees the row (SQLite has one writer at a
time, and readers see committed data only), and the index is whole at every commit. The
update and delete triggers are unchanged.

Why: FTS5 flushes its pending terms at the end of every statement, and a trigger's
insert is one statement per row, so each agent wrote its own index segment, merged
later: 47,500 agents took 2.6 s of CPU with the triggers, 0.66 s with the two bulk
statements (``bench/reconcile.py``'s rows, SQLite 3.40).

PostgreSQL (GIN indexes, no triggers) and SQLite builds without the trigram tokenizer
(no search tables): nothing to do.

Revision ID: 0014_search_index_bulk
Revises: 0013_reconcile_digest_username
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_search_index_bulk"
down_revision: str | None = "0013_reconcile_digest_username"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The insert triggers of 0010 and the header each was created with (SQLite keeps a
#: trigger's text as written).
_TRIGGERS = {
    "agent_search_agent_ai": "AFTER INSERT ON agent BEGIN",
    "agent_search_doc_ai": "AFTER INSERT ON agent_search_doc BEGIN",
}
_GATE = "WHEN NOT EXISTS (SELECT 1 FROM agent_search_pause) BEGIN"

#: The document of every agent, as ``agent_search_agent_ai`` writes it (0010's
#: expressions), with the agent's rowid to select the rows of one bulk insert.
_SOURCE = """CREATE VIEW agent_search_source AS SELECT
    agent.rowid AS agent_rowid,
    agent.id AS agent_id,
    agent.organization_id AS organization_id,
    coalesce(lower(json_extract(agent.data, '$.name')), '') AS name_key,
    agent.crm_id AS crm_id,
    coalesce(json_extract(agent.data, '$.name'), '') AS name,
    coalesce(agent.username_key, '') AS username
FROM agent"""


def _has_search_tables() -> bool:
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_search_doc'")
    )
    return found.first() is not None


def _rewrite(old: str, new: str) -> None:
    """Create each insert trigger again with ``old`` (in its header) replaced by ``new``."""
    bind = op.get_bind()
    for name, header in _TRIGGERS.items():
        sql = bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :name"),
            {"name": name},
        ).scalar_one()
        current = header.replace("BEGIN", old)
        if current not in sql:
            raise RuntimeError(f"trigger {name} is not as migration 0010 created it: {sql!r}")
        op.execute(f"DROP TRIGGER {name}")
        op.execute(sql.replace(current, header.replace("BEGIN", new), 1))


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _has_search_tables():
        return
    op.execute("CREATE TABLE agent_search_pause (id INTEGER PRIMARY KEY CHECK (id = 1))")
    op.execute(_SOURCE)
    _rewrite("BEGIN", _GATE)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _has_search_tables():
        return
    _rewrite(_GATE, "BEGIN")
    op.execute("DROP VIEW agent_search_source")
    op.execute("DROP TABLE agent_search_pause")
