"""PostgreSQL: the agent search's GIN trigram indexes (``0010_dashboard_search``) take
inserts through GIN's pending list again, with a small list (``fastupdate = on``,
``gin_pending_list_limit = 256`` kB) instead of ``0012``'s direct inserts (issue 11:
ingest).

Inserted directly, every agent's trigrams (about 40 per agent: name and username key)
are placed one by one in the index's entry and posting trees, page after page: at load
average 9 the 100-agent ``INSERT`` of a webhook message took 126 ms with the two indexes
and 20 ms without them, the largest part of PostgreSQL's CPU per message. The pending
list takes a row's entries in one append and merges them later sorted, many rows at a
time: 40 inserts of 100 agents onto 5,000 took median 27 ms each (max 56) direct, 5 ms
(max 21 ms, the inserts that merged) with a 256 kB list. ``0012`` left the list for its
4 MB default, where the transaction that overflows it merges all of it before it can
commit (p99 0.83-3.8 s); 256 kB bounds that merge to a few hundred agents' entries.
Searches read the pending list too, so their results are unchanged. PostgreSQL "GIN Fast
Update Technique": https://www.postgresql.org/docs/15/gin-implementation.html#GIN-FAST-UPDATE
and ``gin_pending_list_limit`` (a storage parameter in kB):
https://www.postgresql.org/docs/15/sql-createindex.html#SQL-CREATEINDEX-STORAGE-PARAMETERS
SQLite: nothing to do.

Revision ID: 0015_search_index_pending_list
Revises: 0014_search_index_bulk
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015_search_index_pending_list"
down_revision: str | None = "0014_search_index_bulk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = ("ix_agent_search_name_trgm", "ix_agent_search_username_trgm")
#: kB; PostgreSQL's minimum is 64, its default 4096.
PENDING_LIST_KB = 256


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _INDEXES:  # absent where pg_trgm could not be created (0010)
        op.execute(
            f"ALTER INDEX IF EXISTS {name} "
            f"SET (fastupdate = on, gin_pending_list_limit = {PENDING_LIST_KB})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _INDEXES:
        op.execute(f"ALTER INDEX IF EXISTS {name} RESET (gin_pending_list_limit)")
        op.execute(f"ALTER INDEX IF EXISTS {name} SET (fastupdate = off)")
