"""An organization's reconcile digest rows as one document
(``reconcile_digest_snapshot``, ``receiver/reconcile/digest_document.py``), loaded by a run
before its read in one value instead of one row per user.

Stores whose digests predate it read the rows until a plan records digests again (the
document is written then).

Revision ID: 0017_reconcile_digest_snapshot
Revises: 0016_tombstone_name
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_reconcile_digest_snapshot"
down_revision: str | None = "0016_tombstone_name"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_digest_snapshot",
        sa.Column(
            "organization_id",
            sa.String(63),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("columns", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reconcile_digest_snapshot")
