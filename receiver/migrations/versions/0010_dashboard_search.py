"""The Users page's search index (``receiver/dashboard/directory.py``), the webhook's
refused requests (``receiver/webhook_refusals.py``) and the endpoint each deploy put in
the Outbound Message (``deployment.endpoint``, ``deployment.token_sha256``).

SQLite (3.34 or later, the first with FTS5's ``trigram`` tokenizer): a document table
``agent_search_doc`` (one row per agent: stable integer id, agent id, organization, the
Users page's name key and crmId, name, casefolded username) and the FTS5 index
``agent_search`` over its name and username (external content, trigram tokenizer), both
kept in step with ``agent`` by triggers, so every writer of ``agent`` (the webhook,
reconcile, replay, bulk statements) updates the index in its own transaction. Older
SQLite builds get neither, and the page falls back to scanning.

PostgreSQL: ``pg_trgm`` (a trusted extension: the database owner may create it) and two
GIN trigram indexes on the same expressions the page filters on. Where the extension
cannot be created the indexes are skipped (the page then scans, as before).

Revision ID: 0010_dashboard_search
Revises: 0009_parking_replay
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_dashboard_search"
down_revision: str | None = "0009_parking_replay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The Users page's name key (the same expression as ``ix_agent_directory_name``).
_SQLITE_NAME_KEY = "coalesce(lower(json_extract({row}.data, '$.name')), '')"
_SQLITE_NAME = "coalesce(json_extract({row}.data, '$.name'), '')"

_SQLITE_DDL = [
    """CREATE TABLE agent_search_doc (
        id INTEGER PRIMARY KEY,
        agent_id VARCHAR(32) NOT NULL UNIQUE,
        organization_id VARCHAR(63) NOT NULL,
        name_key TEXT NOT NULL,
        crm_id VARCHAR(18) NOT NULL,
        name TEXT NOT NULL,
        username TEXT NOT NULL
    )""",
    # Searches of one or two characters (shorter than a trigram) walk this covering index
    # in the page's order, testing name_key and username without reading the agent rows.
    "CREATE INDEX ix_agent_search_doc_order ON agent_search_doc "
    "(organization_id, name_key, crm_id, username, agent_id)",
    "CREATE VIRTUAL TABLE agent_search USING fts5(name, username, "
    "content='agent_search_doc', content_rowid='id', tokenize='trigram')",
    # The document table drives the FTS index (external content: the index is told the
    # old values on delete and update).
    """CREATE TRIGGER agent_search_doc_ai AFTER INSERT ON agent_search_doc BEGIN
        INSERT INTO agent_search(rowid, name, username) VALUES (new.id, new.name, new.username);
    END""",
    """CREATE TRIGGER agent_search_doc_ad AFTER DELETE ON agent_search_doc BEGIN
        INSERT INTO agent_search(agent_search, rowid, name, username)
        VALUES ('delete', old.id, old.name, old.username);
    END""",
    """CREATE TRIGGER agent_search_doc_au AFTER UPDATE OF name, username ON agent_search_doc
    WHEN old.name IS NOT new.name OR old.username IS NOT new.username BEGIN
        INSERT INTO agent_search(agent_search, rowid, name, username)
        VALUES ('delete', old.id, old.name, old.username);
        INSERT INTO agent_search(rowid, name, username) VALUES (new.id, new.name, new.username);
    END""",
    # The agent table drives the document table. INSERT OR REPLACE: a stale document of a
    # reused agent id (never expected) is replaced rather than failing the agent's write.
    f"""CREATE TRIGGER agent_search_agent_ai AFTER INSERT ON agent BEGIN
        INSERT OR REPLACE INTO agent_search_doc
            (agent_id, organization_id, name_key, crm_id, name, username)
        VALUES (new.id, new.organization_id, {_SQLITE_NAME_KEY.format(row="new")}, new.crm_id,
                {_SQLITE_NAME.format(row="new")}, coalesce(new.username_key, ''));
    END""",
    f"""CREATE TRIGGER agent_search_agent_au AFTER UPDATE ON agent
    WHEN old.id IS NOT new.id OR old.organization_id IS NOT new.organization_id
        OR old.crm_id IS NOT new.crm_id OR old.username_key IS NOT new.username_key
        OR json_extract(old.data, '$.name') IS NOT json_extract(new.data, '$.name') BEGIN
        UPDATE agent_search_doc SET
            agent_id = new.id,
            organization_id = new.organization_id,
            name_key = {_SQLITE_NAME_KEY.format(row="new")},
            crm_id = new.crm_id,
            name = {_SQLITE_NAME.format(row="new")},
            username = coalesce(new.username_key, '')
        WHERE agent_id = old.id;
    END""",
    """CREATE TRIGGER agent_search_agent_ad AFTER DELETE ON agent BEGIN
        DELETE FROM agent_search_doc WHERE agent_id = old.id;
    END""",
]

_SQLITE_BACKFILL = f"""INSERT INTO agent_search_doc
    (agent_id, organization_id, name_key, crm_id, name, username)
    SELECT id, organization_id, {_SQLITE_NAME_KEY.format(row="agent")}, crm_id,
           {_SQLITE_NAME.format(row="agent")}, coalesce(username_key, '')
    FROM agent"""

_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS agent_search_agent_ad",
    "DROP TRIGGER IF EXISTS agent_search_agent_au",
    "DROP TRIGGER IF EXISTS agent_search_agent_ai",
    "DROP TRIGGER IF EXISTS agent_search_doc_au",
    "DROP TRIGGER IF EXISTS agent_search_doc_ad",
    "DROP TRIGGER IF EXISTS agent_search_doc_ai",
    "DROP TABLE IF EXISTS agent_search",
    "DROP INDEX IF EXISTS ix_agent_search_doc_order",
    "DROP TABLE IF EXISTS agent_search_doc",
]

_PG_NAME_KEY = "coalesce(lower(data ->> 'name'), '')"


def _sqlite_has_trigram() -> bool:
    """FTS5's trigram tokenizer arrived in SQLite 3.34.0 (https://sqlite.org/fts5.html)."""
    major, minor, *_ = (int(p) for p in sqlite3.sqlite_version.split("."))
    return (major, minor) >= (3, 34)


def _create_webhook_refusal() -> None:
    op.create_table(
        "webhook_refusal",
        sa.Column(
            "organization_id",
            sa.String(63),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
    )


def upgrade() -> None:
    _create_webhook_refusal()
    op.add_column("deployment", sa.Column("endpoint", sa.Text(), nullable=True))
    op.add_column("deployment", sa.Column("token_sha256", sa.String(64), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if not _sqlite_has_trigram():
            return
        for statement in _SQLITE_DDL:
            op.execute(statement)
        op.execute(_SQLITE_BACKFILL)
        return
    if bind.dialect.name == "postgresql":
        nested = bind.begin_nested()
        try:
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except sa.exc.DBAPIError:
            nested.rollback()
            return
        nested.commit()
        op.execute(
            f"CREATE INDEX ix_agent_search_name_trgm ON agent USING gin (({_PG_NAME_KEY}) "
            "gin_trgm_ops)"
        )
        op.execute(
            "CREATE INDEX ix_agent_search_username_trgm ON agent USING gin "
            "(username_key gin_trgm_ops)"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in _SQLITE_DROP:
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_agent_search_username_trgm")
        op.execute("DROP INDEX IF EXISTS ix_agent_search_name_trgm")
    with op.batch_alter_table("deployment") as batch:
        batch.drop_column("token_sha256")
        batch.drop_column("endpoint")
    op.drop_table("webhook_refusal")
