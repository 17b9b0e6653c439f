"""SQLite: the Users search index is kept by the writer of agents
(``receiver.agent_search``), no longer by per-row insert and update triggers.

Drops ``agent_search_agent_ai`` and ``agent_search_doc_ai`` (a new agent's search document
and its FTS5 entry; gated since ``0014_search_index_bulk`` by the one-row table
``agent_search_pause``) and ``agent_search_agent_au`` and ``agent_search_doc_au`` (an
updated agent's document and its FTS5 entry). The writer fills and refreshes them in
set-based statements instead:

- a closed gate still ran a trigger program for every inserted row, about two thirds of
  the insert's cost (47,500 agents: 1.12 s against 0.38 s, SQLite 3.40);
- FTS5 writes an index segment per statement, so an update trigger wrote one per updated
  agent: a message of 100 updates over 100,000 stored agents (an index built in bulk, as
  reconcile and the webhook build it) took 78 ms, 25 ms without the update triggers
  (``bench.ingest --preload``).

The view ``agent_search_source`` stays (the writer copies documents from it), and so do
the delete triggers of ``0010_dashboard_search`` (deletes are rare: deprovisioning).
The index is whole before and after: nothing to backfill.

``agent_search_pause`` stays, unused by this release on a migrated store: a process of the
previous release still serving the migrated store (a restart one worker at a time) takes
its bulk path while the table exists, so it still indexes the agents it inserts (its
updates are then not indexed until this release rewrites the agent; the Users page finds
such an agent by its old name meanwhile).

PostgreSQL (GIN indexes, no triggers) and SQLite builds without the trigram tokenizer
(no search tables): nothing to do.

Revision ID: 0021_search_index_by_writer
Revises: 0020_actors
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_search_index_by_writer"
down_revision: str | None = "0020_actors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DROPPED = (
    "agent_search_agent_ai",
    "agent_search_doc_ai",
    "agent_search_agent_au",
    "agent_search_doc_au",
)

#: The four triggers as ``0014`` left them (``0010``'s text, the insert ones gated).
_RESTORED = (
    """CREATE TRIGGER agent_search_doc_ai AFTER INSERT ON agent_search_doc WHEN NOT EXISTS (SELECT 1 FROM agent_search_pause) BEGIN
        INSERT INTO agent_search(rowid, name, username) VALUES (new.id, new.name, new.username);
    END""",  # noqa: E501
    """CREATE TRIGGER agent_search_doc_au AFTER UPDATE OF name, username ON agent_search_doc
    WHEN old.name IS NOT new.name OR old.username IS NOT new.username BEGIN
        INSERT INTO agent_search(agent_search, rowid, name, username)
        VALUES ('delete', old.id, old.name, old.username);
        INSERT INTO agent_search(rowid, name, username) VALUES (new.id, new.name, new.username);
    END""",
    """CREATE TRIGGER agent_search_agent_ai AFTER INSERT ON agent WHEN NOT EXISTS (SELECT 1 FROM agent_search_pause) BEGIN
        INSERT OR REPLACE INTO agent_search_doc
            (agent_id, organization_id, name_key, crm_id, name, username)
        VALUES (new.id, new.organization_id, coalesce(lower(json_extract(new.data, '$.name')), ''), new.crm_id,
                coalesce(json_extract(new.data, '$.name'), ''), coalesce(new.username_key, ''));
    END""",  # noqa: E501
    """CREATE TRIGGER agent_search_agent_au AFTER UPDATE ON agent
    WHEN old.id IS NOT new.id OR old.organization_id IS NOT new.organization_id
        OR old.crm_id IS NOT new.crm_id OR old.username_key IS NOT new.username_key
        OR json_extract(old.data, '$.name') IS NOT json_extract(new.data, '$.name') BEGIN
        UPDATE agent_search_doc SET
            agent_id = new.id,
            organization_id = new.organization_id,
            name_key = coalesce(lower(json_extract(new.data, '$.name')), ''),
            crm_id = new.crm_id,
            name = coalesce(json_extract(new.data, '$.name'), ''),
            username = coalesce(new.username_key, '')
        WHERE agent_id = old.id;
    END""",
)


def _has_pause() -> bool:
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_search_pause'")
    )
    return found.first() is not None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _has_pause():
        return
    for name in _DROPPED:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _has_pause():
        return
    for statement in _RESTORED:
        op.execute(statement)
