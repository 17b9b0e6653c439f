"""PostgreSQL: the agent search's GIN trigram indexes (``0010_dashboard_search``) take
each insert directly into the index (``fastupdate = off``) instead of through GIN's
pending list (issue 11: ingest).

With the pending list, every concurrent webhook transaction appends its agents' trigrams
to the one list (one exclusive page lock) and the transaction that overflows
``gin_pending_list_limit`` merges the whole list into the index before it can commit:
``bench.ingest`` with ``serve --workers 4`` measured 398 notifications/s, p99 3.8 s and
205 ms of PostgreSQL CPU per 100-agent message with the default, 792 notifications/s,
p99 0.83 s and 81 ms with ``fastupdate = off`` (load average 10-13, README "Figures
measured"). Searches are unchanged. PostgreSQL "GIN Fast Update Technique":
https://www.postgresql.org/docs/15/gin-implementation.html#GIN-FAST-UPDATE
SQLite: nothing to do.

Revision ID: 0012_search_index_fastupdate
Revises: 0011_reconcile_digest
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012_search_index_fastupdate"
down_revision: str | None = "0011_reconcile_digest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = ("ix_agent_search_name_trgm", "ix_agent_search_username_trgm")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _INDEXES:  # absent where pg_trgm could not be created (0010)
        op.execute(f"ALTER INDEX IF EXISTS {name} SET (fastupdate = off)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _INDEXES:
        op.execute(f"ALTER INDEX IF EXISTS {name} RESET (fastupdate)")
