"""SQLite: new agents are indexed for the Users search by their writer
(``receiver.agent_search.insert_agents``), no longer by insert triggers.

Drops the insert triggers ``agent_search_agent_ai`` (an agent's search document) and
``agent_search_doc_ai`` (its FTS5 entry), both gated since ``0014_search_index_bulk`` by
the one-row table ``agent_search_pause``. Every writer already filled the index in two
set-based statements with the gate closed; a closed gate still ran a trigger program for
every inserted row, about two thirds of the insert's cost (47,500 agents: 1.12 s against
0.38 s, SQLite 3.40). The view ``agent_search_source`` stays (the writer copies documents
from it), and so do the update and delete triggers of ``0010_dashboard_search``. The index
is whole before and after: nothing to backfill.

``agent_search_pause`` stays, unused by this release: a process of the previous release
still serving the migrated store (a restart one worker at a time) takes its bulk path
while the table exists, so it still indexes every agent it inserts itself (its pause
then gates nothing).

PostgreSQL (GIN indexes, no triggers) and SQLite builds without the trigram tokenizer
(no search tables): nothing to do.

Revision ID: 0021_search_index_insert
Revises: 0020_actors
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_search_index_insert"
down_revision: str | None = "0020_actors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The two triggers as ``0014`` left them (``0010``'s text with the pause gate).
_GATED = (
    """CREATE TRIGGER agent_search_doc_ai AFTER INSERT ON agent_search_doc WHEN NOT EXISTS (SELECT 1 FROM agent_search_pause) BEGIN
        INSERT INTO agent_search(rowid, name, username) VALUES (new.id, new.name, new.username);
    END""",  # noqa: E501
    """CREATE TRIGGER agent_search_agent_ai AFTER INSERT ON agent WHEN NOT EXISTS (SELECT 1 FROM agent_search_pause) BEGIN
        INSERT OR REPLACE INTO agent_search_doc
            (agent_id, organization_id, name_key, crm_id, name, username)
        VALUES (new.id, new.organization_id, coalesce(lower(json_extract(new.data, '$.name')), ''), new.crm_id,
                coalesce(json_extract(new.data, '$.name'), ''), coalesce(new.username_key, ''));
    END""",  # noqa: E501
)


def _has_pause() -> bool:
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_search_pause'")
    )
    return found.first() is not None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _has_pause():
        return
    op.execute("DROP TRIGGER IF EXISTS agent_search_agent_ai")
    op.execute("DROP TRIGGER IF EXISTS agent_search_doc_ai")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _has_pause():
        return
    for statement in _GATED:
        op.execute(statement)
