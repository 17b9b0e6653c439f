"""The store's tables for background jobs and leases (``receiver/jobs.py`` writes them)::

    job         id PK; organization_id (FK, cascade), kind, state, steps (JSON list of
                {"name", "at"}), deploy_id, result (JSON object), problems (JSON list of
                str), owner, started_by, created_at, started_at, finished_at; index
                (organization_id, kind, id)
    job_lease   key PK (``"<organization>:<kind>"``, a kind of :data:`LEASE_SHARED_WITH`
                under the kind it shares, or ``"schedule:<task>"``); job_id,
                owner, expires_at: who may run that key until when

A lease is the cross-process, cross-host "at most one at a time": a worker holds it while it
runs the job and renews it (heartbeat); a crashed worker's lease expires and the next
worker may take it over. Scheduled tasks use the same table as a "ran at most once per
interval" marker.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from receiver.models import UTCDateTime, organization_column

__all__ = ["LEASE_SHARED_WITH", "Job", "JobKind", "JobLease"]


class JobKind(StrEnum):
    """The kinds of jobs (one running per organization and lease, :data:`LEASE_SHARED_WITH`).

    ``reconcile-users`` is a reconcile of chosen Users (Sync now, ``reconcile run --user``):
    its own kind, so that the organization's "Last run" is never a one-user sync, under the
    reconcile's lease, so that the two never overlap."""

    REFRESH_WEBHOOK = "refresh-webhook"
    RECONCILE = "reconcile"
    RECONCILE_USERS = "reconcile-users"
    KEEP_ALIVE = "keep-alive"
    REPLAY = "replay"


#: Kinds that run under another kind's lease: one of either runs at a time.
LEASE_SHARED_WITH: dict[str, str] = {JobKind.RECONCILE_USERS: JobKind.RECONCILE}


def _utc(*, nullable: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable)


class Job(SQLModel, table=True):
    """One background job run (Refresh Webhook, reconcile, keep-alive...).

    - ``kind``: the job kind (``receiver.jobs.JobKind`` values, or a caller's string)
    - ``state``: ``"running" | "succeeded" | "failed"`` (``receiver.jobs.JobState``); a
      running job whose lease expired reads as ``"interrupted"``
    - ``steps``: ``[{"name": str, "at": ISO 8601 UTC}]``, in the order they happened
    - ``deploy_id``: the Salesforce deploy id (``0Af...``) as soon as it is known
    - ``result``: a JSON object the job returned; ``problems``: one line per problem
    - ``started_by``: who started it (``operator:<username>``, ``cli:<login>@<host>``,
      ``scheduler``; ``None`` for a job from before migration 0020)
    """

    __tablename__ = "job"
    __table_args__ = (sa.Index("ix_job_organization_kind_id", "organization_id", "kind", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(sa_column=organization_column())
    kind: str = Field(max_length=40)
    state: str = Field(max_length=20)
    steps: list[dict[str, str]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    deploy_id: str | None = Field(default=None, max_length=40)
    result: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    problems: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    owner: str = Field(max_length=200)
    started_by: str | None = Field(default=None, max_length=340)
    created_at: datetime = Field(sa_column=_utc())
    started_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class JobLease(SQLModel, table=True):
    """Who may run ``key`` until ``expires_at`` (see the module docstring)."""

    __tablename__ = "job_lease"

    key: str = Field(primary_key=True, max_length=200)
    job_id: int | None = Field(default=None)
    owner: str | None = Field(default=None, max_length=200)
    expires_at: datetime = Field(sa_column=_utc())
