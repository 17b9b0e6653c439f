"""Who did it: ``job.started_by`` (who started a Refresh Webhook, a reconcile, a Sync now,
a replay) and ``reconcile_plan.created_by``, ``decided_by``, ``decided_at`` (who started
the run that made a plan, and who approved, applied or rejected it, when). Values are
``operator:<username>`` (the dashboard), ``cli:<login>@<host>`` (the command line) or
``scheduler`` (``serve``'s periodic tasks); rows from before are ``NULL`` (not known).

Revision ID: 0020_actors
Revises: 0019_reconcile_users_jobs
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_actors"
down_revision: str | None = "0019_reconcile_users_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("started_by", sa.String(length=340), nullable=True))
    with op.batch_alter_table("reconcile_plan") as batch:
        batch.add_column(sa.Column("created_by", sa.String(length=340), nullable=True))
        batch.add_column(sa.Column("decided_by", sa.String(length=340), nullable=True))
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reconcile_plan") as batch:
        batch.drop_column("decided_at")
        batch.drop_column("decided_by")
        batch.drop_column("created_by")
    with op.batch_alter_table("job") as batch:
        batch.drop_column("started_by")
