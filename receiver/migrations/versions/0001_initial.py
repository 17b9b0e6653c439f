"""The first schema: organizations, agents, tombstones, sessions, processed notification
ids, the provisioning log and deployments (``docs/architecture.md`` "Store").

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _org_fk(*, primary_key: bool = False) -> sa.Column[object]:
    return sa.Column(
        "organization_id",
        sa.String(63),
        sa.ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "organization",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("salesforce_org_id", sa.String(18), nullable=False),
        sa.Column("base_url", sa.String(2000), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("token_encrypted", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "agent",
        sa.Column("id", sa.String(32), primary_key=True),
        _org_fk(),
        sa.Column("crm_id", sa.String(18), nullable=False),
        sa.Column("username", sa.String(320), nullable=True),
        sa.Column("username_key", sa.String(320), nullable=True),
        _ts("system_modstamp", nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("organization_id", "crm_id", name="uq_agent_organization_crm_id"),
    )
    op.create_index(
        "uq_agent_organization_username_key",
        "agent",
        ["organization_id", "username_key"],
        unique=True,
        postgresql_where=sa.text("username_key IS NOT NULL"),
        sqlite_where=sa.text("username_key IS NOT NULL"),
    )
    op.create_table(
        "tombstone",
        _org_fk(primary_key=True),
        sa.Column("crm_id", sa.String(18), primary_key=True),
        sa.Column("agent_id", sa.String(32), nullable=True),
        _ts("system_modstamp", nullable=True),
        _ts("deprovisioned_at"),
    )
    op.create_table(
        "agent_session",
        sa.Column("id", sa.String(64), primary_key=True),
        _org_fk(),
        sa.Column("agent_id", sa.String(32), nullable=False),
        sa.Column("crm_id", sa.String(18), nullable=False),
        _ts("started_at"),
        _ts("ended_at", nullable=True),
        sa.Column("end_reason", sa.String(40), nullable=True),
    )
    op.create_index("ix_agent_session_agent_id", "agent_session", ["agent_id", "ended_at"])
    op.create_table(
        "processed_notification",
        _org_fk(primary_key=True),
        sa.Column("notification_id", sa.String(18), primary_key=True),
        _ts("processed_at"),
    )
    op.create_index(
        "ix_processed_notification_processed_at", "processed_notification", ["processed_at"]
    )
    op.create_table(
        "provisioning_message",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _org_fk(),
        _ts("received_at"),
        sa.Column("action_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("notification_count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_provisioning_message_organization_id_id",
        "provisioning_message",
        ["organization_id", sa.text("id DESC")],
    )
    op.create_table(
        "provisioning_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            sa.Integer(),
            sa.ForeignKey("provisioning_message.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(18), nullable=True),
        sa.Column("crm_id", sa.String(18), nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_provisioning_event_message_id", "provisioning_event", ["message_id", "position"]
    )
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _org_fk(),
        _ts("created_at"),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=True),
        sa.Column("api_version", sa.String(10), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("deploy_id", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
    )
    op.create_index("ix_deployment_organization_id_id", "deployment", ["organization_id", "id"])


def downgrade() -> None:
    op.drop_table("deployment")
    op.drop_table("provisioning_event")
    op.drop_table("provisioning_message")
    op.drop_table("processed_notification")
    op.drop_table("agent_session")
    op.drop_table("tombstone")
    op.drop_table("agent")
    op.drop_table("organization")
