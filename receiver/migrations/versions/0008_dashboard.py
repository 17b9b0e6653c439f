"""The dashboard: operators, their organizations, signed-in sessions, failed sign-ins, the
audit of the Agent Auto Provision switch; indexes the dashboard's pages read through (the
agent list in name order, the provisioning log by Salesforce user, action and date).

Revision ID: 0008_dashboard
Revises: 0007_jobs_connection
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_dashboard"
down_revision: str | None = "0007_jobs_connection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _name_expression(dialect: str) -> str:
    if dialect == "postgresql":
        return "coalesce(lower(data ->> 'name'), '')"
    return "coalesce(lower(json_extract(data, '$.name')), '')"


def upgrade() -> None:
    op.create_table(
        "dashboard_operator",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(320), nullable=False),
        sa.Column("username_key", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("all_organizations", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("password_changed_at"),
    )
    op.create_table(
        "dashboard_operator_org",
        sa.Column(
            "operator_id",
            sa.Integer(),
            sa.ForeignKey("dashboard_operator.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "organization_id",
            sa.String(63),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "dashboard_session",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "operator_id",
            sa.Integer(),
            sa.ForeignKey("dashboard_operator.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _ts("created_at"),
        _ts("last_seen_at"),
        _ts("ended_at", nullable=True),
        sa.Column("end_reason", sa.String(40), nullable=True),
        sa.Column("client_address", sa.String(64), nullable=True),
    )
    op.create_index("ix_dashboard_session_operator_id", "dashboard_session", ["operator_id"])
    op.create_table(
        "dashboard_signin_failure",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        _ts("at"),
    )
    op.create_index(
        "ix_dashboard_signin_failure_subject",
        "dashboard_signin_failure",
        ["kind", "subject", "at"],
    )
    op.create_table(
        "feature_audit",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "organization_id",
            sa.String(63),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _ts("at"),
        sa.Column("actor", sa.String(340), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.Column("enabled_before", sa.Boolean(), nullable=False),
        sa.Column("enabled_after", sa.Boolean(), nullable=False),
    )
    op.create_index(
        "ix_feature_audit_organization_id_id", "feature_audit", ["organization_id", "id"]
    )
    op.create_index("ix_provisioning_event_crm_id", "provisioning_event", ["crm_id", "message_id"])
    op.create_index("ix_provisioning_event_action", "provisioning_event", ["action", "message_id"])
    op.create_index(
        "ix_provisioning_message_organization_id_received_at",
        "provisioning_message",
        ["organization_id", "received_at"],
    )
    op.create_index(
        "ix_provisioning_message_organization_id_outcome",
        "provisioning_message",
        ["organization_id", "outcome", "id"],
    )
    dialect = op.get_bind().dialect.name
    op.execute(
        "CREATE INDEX ix_agent_directory_name ON agent "
        f"(organization_id, {_name_expression(dialect)}, crm_id)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_agent_directory_name")
    op.drop_index("ix_provisioning_message_organization_id_outcome", "provisioning_message")
    op.drop_index("ix_provisioning_message_organization_id_received_at", "provisioning_message")
    op.drop_index("ix_provisioning_event_action", "provisioning_event")
    op.drop_index("ix_provisioning_event_crm_id", "provisioning_event")
    op.drop_table("feature_audit")
    op.drop_table("dashboard_signin_failure")
    op.drop_table("dashboard_session")
    op.drop_table("dashboard_operator_org")
    op.drop_table("dashboard_operator")
