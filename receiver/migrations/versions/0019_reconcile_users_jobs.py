"""A reconcile of chosen Users (Sync now, ``reconcile run --user``) is a job of its own kind,
``reconcile-users`` (``receiver.job_tables.JobKind``), under the reconcile's lease. Until
now it was a ``reconcile`` job whose first step was ``reading chosen users``: those jobs
take the new kind, so the Reconcile page's "Last run" is never one of them. A data-only
revision: no table changes.

Revision ID: 0019_reconcile_users_jobs
Revises: 0018_provisioning_message_source
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_reconcile_users_jobs"
down_revision: str | None = "0018_provisioning_message_source"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JOB = sa.table(
    "job", sa.column("id", sa.Integer), sa.column("kind", sa.String), sa.column("steps", sa.JSON)
)
_MARKER = "reading chosen users"


def _retag(old: str, new: str, *, marked: bool) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_JOB.c.id, _JOB.c.steps).where(_JOB.c.kind == old)).all()
    ids = [
        r.id
        for r in rows
        if not marked
        or (r.steps and isinstance(r.steps[0], dict) and r.steps[0].get("name") == _MARKER)
    ]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        bind.execute(sa.update(_JOB).where(_JOB.c.id.in_(chunk)).values(kind=new))


def upgrade() -> None:
    _retag("reconcile", "reconcile-users", marked=True)


def downgrade() -> None:
    _retag("reconcile-users", "reconcile", marked=False)
