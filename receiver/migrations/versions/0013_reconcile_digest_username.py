"""Reconcile's digest rows keep the agent's username as recorded
(``receiver/reconcile/digests.py``): a run that finds the store as it left it reads the
plan rows of its unchanged users from the digests alone, without loading every agent.

The rows recorded before are dropped: they digested orjson's writing of each record,
the new ones the record's text as read, so none would match again (the next run decides
every user in full and records them anew).

Revision ID: 0013_reconcile_digest_username
Revises: 0012_search_index_fastupdate
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_reconcile_digest_username"
down_revision: str | None = "0012_search_index_fastupdate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM reconcile_digest")
    with op.batch_alter_table("reconcile_digest") as batch:
        batch.add_column(sa.Column("username", sa.String(320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reconcile_digest") as batch:
        batch.drop_column("username")
