"""The reconcile tables (registered on the store's ``SQLModel.metadata``)::

    reconcile_plan   id (12 hex) PK; organization_id; created_at; kind (full/incremental);
                     status (planned/held/applied/rejected); counts (JSON, CONTRACT
                     section 6 keys); applied_counts (JSON, once applied); hold_reason;
                     api_calls; users_read; agents_before; max_deletions (the guard's limit); watermark (the newest
                     SystemModstamp read); detail; applied_at; rows (zlib-compressed JSON,
                     see ``receiver.reconcile.plans``); index (organization_id, created_at)

    reconcile_digest organization_id + crm_id PK; digest (32 hex: the User record as
                     last read and applied, ``sf_metadata.reconcile.record_digest``);
                     agent_updated_at (the ``agent.updated_at`` that applying left, NULL
                     for a user with a tombstone only); system_modstamp (the tombstone's
                     stamp, for those); disabled (the agent JSON's); username (the
                     agent's, NULL for a tombstone)

    reconcile_digest_snapshot organization_id PK; columns (the organization's digest
                     rows as one zlib-compressed JSON document, written with them: see
                     ``receiver.reconcile.digest_document``)

A plan's rows are one compressed document rather than one row each: a 50,000-user plan is
written and read in one statement (``bench/reconcile.py``), and it is always read whole.

A digest vouches that the stored agent (or tombstone) is still exactly what deciding that
record wrote, as long as the agent row was not written since (every agent write sets
``updated_at``) and no tombstone or parked change appeared: see
``receiver.reconcile.digests``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from receiver.models import UTCDateTime, organization_column

__all__ = ["ReconcileDigest", "ReconcileDigestSnapshot", "ReconcilePlanRecord"]


class ReconcilePlanRecord(SQLModel, table=True):
    """One stored reconcile plan."""

    __tablename__ = "reconcile_plan"
    __table_args__ = (
        sa.Index("ix_reconcile_plan_organization_id_created_at", "organization_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    organization_id: str = Field(sa_column=organization_column())
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    kind: str = Field(max_length=20)
    status: str = Field(max_length=20)
    counts: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    applied_counts: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    hold_reason: str | None = Field(default=None, max_length=500)
    api_calls: int = 0
    users_read: int = 0
    agents_before: int = 0
    max_deletions: int = 500
    watermark: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    detail: str | None = Field(default=None, max_length=500)
    applied_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    #: who started the run that made it, and who approved, applied or rejected it
    #: (``operator:<username>``, ``cli:<login>@<host>``, ``scheduler``; migration 0020)
    created_by: str | None = Field(default=None, max_length=340)
    decided_by: str | None = Field(default=None, max_length=340)
    decided_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    rows: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))


class ReconcileDigest(SQLModel, table=True):
    """The digest of the User record a user's stored state was last decided from."""

    __tablename__ = "reconcile_digest"

    organization_id: str = Field(sa_column=organization_column(primary_key=True))
    crm_id: str = Field(primary_key=True, max_length=18)
    digest: str = Field(max_length=32)
    agent_updated_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    system_modstamp: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    disabled: bool = False
    username: str | None = Field(default=None, max_length=320)


class ReconcileDigestSnapshot(SQLModel, table=True):
    """An organization's digest rows as one document (written in the transaction that
    wrote the rows)."""

    __tablename__ = "reconcile_digest_snapshot"

    organization_id: str = Field(sa_column=organization_column(primary_key=True))
    columns: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
