"""Parked changes (a username collision decided again when the username is released) and
failed notifications kept for their replay (``receiver/provisioning_tables.py``).

Revision ID: 0009_parking_replay
Revises: 0008_dashboard
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_parking_replay"
down_revision: str | None = "0008_dashboard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _org_fk() -> sa.Column[object]:
    return sa.Column(
        "organization_id",
        sa.String(63),
        sa.ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "parked_change",
        sa.Column("id", sa.Integer(), primary_key=True),
        _org_fk(),
        sa.Column("crm_id", sa.String(18), nullable=False),
        sa.Column("username_key", sa.String(320), nullable=False),
        sa.Column("holder_crm_id", sa.String(18), nullable=False),
        sa.Column("system_modstamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("notification_id", sa.String(18), nullable=True),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_parked_change_organization_id_crm_id", "parked_change", ["organization_id", "crm_id"]
    )
    op.create_index(
        "ix_parked_change_organization_id_username_key",
        "parked_change",
        ["organization_id", "username_key"],
    )
    op.create_table(
        "failed_notification",
        sa.Column(
            "event_id",
            sa.Integer(),
            sa.ForeignKey("provisioning_event.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        _org_fk(),
        sa.Column("notification_id", sa.String(64), nullable=True),
        sa.Column("sobject_type", sa.String(80), nullable=True),
        sa.Column("record_id", sa.String(64), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_failed_notification_organization_id", "failed_notification", ["organization_id"]
    )


def downgrade() -> None:
    op.drop_table("failed_notification")
    op.drop_table("parked_change")
