"""Background jobs and their leases (``receiver/job_tables.py``), the stored Salesforce
connection (``receiver/salesforce_connection.py``) and the pending OAuth sign-ins
(``receiver/salesforce_oauth.py``).

Revision ID: 0007_jobs_connection
Revises: 0006_reconcile_plan
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_jobs_connection"
down_revision: str | None = "0006_reconcile_plan"
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
        "job",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _org_fk(),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("deploy_id", sa.String(40), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
    )
    op.create_index("ix_job_organization_kind_id", "job", ["organization_id", "kind", "id"])
    op.create_table(
        "job_lease",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        _ts("expires_at"),
    )
    op.create_table(
        "salesforce_connection",
        _org_fk(primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("instance_url", sa.String(2000), nullable=False),
        sa.Column("salesforce_org_id", sa.String(18), nullable=False),
        sa.Column("is_sandbox", sa.Boolean(), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(18), nullable=True),
        sa.Column("login_url", sa.String(2000), nullable=True),
        sa.Column("secrets_encrypted", sa.Text(), nullable=False),
        _ts("connected_at"),
        _ts("last_used_at", nullable=True),
        _ts("refreshed_at", nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
    )

    op.create_table(
        "oauth_state",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        _org_fk(),
        sa.Column("login_url", sa.String(2000), nullable=False),
        sa.Column("verifier_encrypted", sa.Text(), nullable=False),
        sa.Column("operator", sa.String(200), nullable=True),
        _ts("created_at"),
        _ts("consumed_at", nullable=True),
    )


def downgrade() -> None:
    op.drop_table("oauth_state")
    op.drop_table("salesforce_connection")
    op.drop_table("job_lease")
    op.drop_index("ix_job_organization_kind_id", table_name="job")
    op.drop_table("job")
