"""The provisioning log names where each batch of decisions came from: an Outbound
Message, a reconcile run or a replayed notification (``provisioning_message.source`` and
``source_ref``).

Revision ID: 0002_message_source
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_message_source"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("provisioning_message") as batch:
        batch.add_column(
            sa.Column("source", sa.String(20), nullable=False, server_default="outbound-message")
        )
        batch.add_column(sa.Column("source_ref", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provisioning_message") as batch:
        batch.drop_column("source_ref")
        batch.drop_column("source")
