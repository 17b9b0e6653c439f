"""The Provisioning log's Source filter (Outbound Message, Reconcile, Replay) walks an index
of its own, ``ix_provisioning_message_organization_id_source`` (organization, source, id):
a filter on a rare source (the replays of a busy organization) reads only its messages,
newest first, instead of every message the log keeps.

Revision ID: 0018_provisioning_message_source
Revises: 0017_reconcile_digest_snapshot
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_provisioning_message_source"
down_revision: str | None = "0017_reconcile_digest_snapshot"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_provisioning_message_organization_id_source",
        "provisioning_message",
        ["organization_id", "source", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_provisioning_message_organization_id_source", "provisioning_message")
