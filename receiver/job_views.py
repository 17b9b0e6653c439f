"""Jobs as pages and commands read them back (the ``job`` and ``job_lease`` tables).

A job row says ``running`` until its worker records the end; it reads as
``interrupted`` when its lease (``"<organization>:<kind>"``, :func:`lease_key`) is gone,
taken by another job or expired: the worker running it stopped. Running jobs is
``receiver/jobs.py``, which re-exports what is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from receiver.job_tables import LEASE_SHARED_WITH, Job, JobLease

__all__ = ["JobState", "JobView", "get_job", "latest_jobs", "lease_key", "lease_kind"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JobState(StrEnum):
    """A job's state as read: ``interrupted`` is a running job whose worker stopped."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class JobView:
    """A job as pages and commands show it. ``steps``: ``(name, at)`` in order;
    ``started_by``: who started it (``receiver.job_tables.Job``)."""

    id: int
    organization: str
    kind: str
    state: JobState
    steps: tuple[tuple[str, datetime], ...]
    deploy_id: str | None
    result: dict[str, Any]
    problems: tuple[str, ...]
    created_at: datetime
    finished_at: datetime | None
    started_by: str | None = None

    @property
    def done(self) -> bool:
        """Whether the job will not change any more."""
        return self.state is not JobState.RUNNING

    @property
    def current_step(self) -> str | None:
        """The name of the last step recorded, or ``None``."""
        return self.steps[-1][0] if self.steps else None


def lease_key(organization: str, kind: str) -> str:
    """The ``job_lease`` key of the organization's jobs of ``kind`` (that of the kind it
    shares a lease with, ``receiver.job_tables.LEASE_SHARED_WITH``)."""
    return f"{organization}:{lease_kind(kind)}"


def lease_kind(kind: str) -> str:
    """The kind whose lease jobs of ``kind`` hold (``reconcile`` for ``reconcile-users``,
    ``receiver.job_tables.LEASE_SHARED_WITH``; else ``kind`` itself)."""
    return LEASE_SHARED_WITH.get(kind, kind)


def _view(job: Job, lease: JobLease | None, now: datetime) -> JobView:
    state = JobState(job.state)
    if state is JobState.RUNNING and (
        lease is None or lease.job_id != job.id or lease.expires_at <= now
    ):
        state = JobState.INTERRUPTED
    assert job.id is not None
    return JobView(
        id=job.id,
        organization=job.organization_id,
        kind=job.kind,
        state=state,
        steps=tuple((s["name"], datetime.fromisoformat(s["at"])) for s in job.steps),
        deploy_id=job.deploy_id,
        result=dict(job.result),
        problems=tuple(job.problems),
        created_at=job.created_at,
        finished_at=job.finished_at,
        started_by=job.started_by,
    )


def get_job(session: Session, job_id: int, *, now: datetime | None = None) -> JobView | None:
    """The job ``job_id`` or ``None``."""
    # The lease is read BEFORE the job: on PostgreSQL (READ COMMITTED) each statement sees
    # the newest commit, and a job's end releases its lease in the same commit that records
    # its state; read the other way round, a job ending in between would read as
    # "interrupted" (running, lease gone).
    head = session.exec(select(Job.organization_id, Job.kind).where(Job.id == job_id)).first()
    if head is None:
        return None
    lease = session.get(JobLease, lease_key(head[0], head[1]))
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        return None
    return _view(job, lease, now or _utc_now())


def latest_jobs(
    session: Session,
    organization: str,
    kind: str,
    *,
    limit: int = 20,
    now: datetime | None = None,
) -> list[JobView]:
    """The organization's newest ``limit`` jobs of ``kind``, newest first."""
    lease = session.get(JobLease, lease_key(organization, kind))  # first: see get_job
    rows = session.exec(
        select(Job)
        .where(Job.organization_id == organization, Job.kind == kind)
        .order_by(col(Job.id).desc())
        .limit(limit)
    ).all()
    moment = now or _utc_now()
    return [_view(job, lease, moment) for job in rows]
