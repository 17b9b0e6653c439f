"""Reconcile's per-user digest of the User record last read and applied
(``receiver/reconcile/tables.py``): an unchanged user is recognised without mapping it.

Revision ID: 0011_reconcile_digest
Revises: 0010_dashboard_search
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_reconcile_digest"
down_revision: str | None = "0010_dashboard_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_digest",
        sa.Column(
            "organization_id",
            sa.String(63),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("crm_id", sa.String(18), primary_key=True),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("agent_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("system_modstamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reconcile_digest")
