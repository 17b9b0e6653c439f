"""A tombstone keeps the Name its user had when deprovisioned (``tombstone.name``), so the
agent page and the provisioning log can say who a deprovisioned Salesforce user was: the
agent row, which held the name, is deleted on deprovision.

Tombstones written before keep ``NULL`` (shown as the user id alone) until their user's
next change.

Revision ID: 0016_tombstone_name
Revises: 0015_search_index_pending_list
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_tombstone_name"
down_revision: str | None = "0015_search_index_pending_list"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tombstone", sa.Column("name", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tombstone") as batch:
        batch.drop_column("name")
