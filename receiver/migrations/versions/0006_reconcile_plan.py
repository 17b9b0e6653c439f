"""reconcile_plan: stored reconcile plans (receiver/reconcile/tables.py).

Revision ID: 0006_reconcile_plan
Revises: 0002_message_source
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_reconcile_plan"
down_revision = "0002_message_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconcile_plan",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "organization_id",
            sa.String(63),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("applied_counts", sa.JSON(), nullable=True),
        sa.Column("hold_reason", sa.String(500), nullable=True),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("users_read", sa.Integer(), nullable=False),
        sa.Column("agents_before", sa.Integer(), nullable=False),
        sa.Column("max_deletions", sa.Integer(), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.LargeBinary(), nullable=False),
    )
    op.create_index(
        "ix_reconcile_plan_organization_id_created_at",
        "reconcile_plan",
        ["organization_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_reconcile_plan_organization_id_created_at", table_name="reconcile_plan")
    op.drop_table("reconcile_plan")
