"""Background jobs whose state, progress and result live in the store.

A job is one run of a kind of work (Refresh Webhook, reconcile, keep-alive) for one
organization. At most one job of a kind runs per organization at a time, across threads,
worker processes and hosts: :func:`start_job` claims the lease row ``"<organization>:<kind>"``
of ``job_lease`` (``receiver/job_tables.py``) in the same transaction that inserts the
``job`` row, and raises :class:`~sf_metadata.errors.JobBusy` while another job holds it.
While a job runs, a heartbeat thread renews its lease every third of :data:`LEASE_TTL`; a
worker that crashed stops renewing, its lease expires, the job reads as ``interrupted``
and the next :func:`start_job` of that kind may run (the stale job is then recorded as
failed, its deploy id kept so the admin can follow it up).

Two ways to run (the same function does the work either way):

- :func:`run_job` runs it in the calling thread (the CLI: ``agent-provision deploy``);
- :func:`start_in_background` claims the lease in the calling thread (so a busy
  organization is refused at once, with the running job's id) and runs the work in a
  daemon thread (the dashboard's buttons); the page then reads the job from the store, so
  any worker can show it.

The work is a callable ``work(progress) -> JobOutcome``; :class:`Progress` records steps
(``progress.step("deploying")``) and the deploy id as they happen, each in its own short
transaction. An :class:`~sf_metadata.errors.AgentProvisionError` raised by the work fails the
job with its problems; any other exception fails it with "internal error" (logged with its
traceback, which must hold no secret: callers never put secrets in exceptions).

Reading jobs back (:class:`JobView`, :func:`get_job`, :func:`latest_jobs`, and when a
running job reads as ``interrupted``) is ``receiver/job_views.py``, re-exported here. The
periodic scheduler that ``serve`` runs is in ``receiver/scheduler.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from deployer.preflight import unreachable
from receiver._logging import LOGGER_NAME
from receiver.db import transaction
from receiver.job_tables import Job, JobKind, JobLease
from receiver.job_views import JobState, JobView, get_job, latest_jobs, lease_key, lease_kind
from sf_metadata.errors import AgentProvisionError, JobBusy, SalesforceError

__all__ = [
    "LEASE_TTL",
    "JobKind",
    "JobOutcome",
    "JobState",
    "INTERNAL_ERROR",
    "JobView",
    "Progress",
    "SCHEDULER",
    "claim_lease",
    "get_job",
    "latest_jobs",
    "process_owner",
    "run_job",
    "start_in_background",
    "start_job",
]

log = logging.getLogger(LOGGER_NAME)

#: Who a job started by ``serve``'s periodic tasks was started by.
SCHEDULER = "scheduler"

#: ``result["error"]`` of a job whose work raised something outside the error tree (a
#: bug: the service log has the traceback); for an ``AgentProvisionError`` it is the
#: error's class name (``sf_metadata.errors``), e.g. ``SalesforceUnreadable``.
INTERNAL_ERROR = "internal"

#: A running job's lease lasts this long unless renewed (renewed every third of it).
LEASE_TTL = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobOutcome:
    """What the work returns: ``succeeded``, a JSON-ready ``result`` and problem lines."""

    succeeded: bool
    result: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def process_owner() -> str:
    """A name for this process that is unique across hosts: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ensure_lease_row(engine: Engine, key: str) -> None:
    """Insert an expired lease row for ``key`` unless one exists (so that claiming it can
    lock an existing row: ``SELECT ... FOR UPDATE`` on PostgreSQL)."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(JobLease)
        .values(key=key, job_id=None, owner=None, expires_at=_EPOCH)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    with transaction(engine) as session:
        session.connection().execute(statement)


def claim_lease(
    engine: Engine, key: str, *, owner: str, until: datetime, now: datetime
) -> JobLease | None:
    """Claim ``key`` until ``until`` if its lease expired by ``now``; ``None`` when another
    holder's lease is still valid. For scheduled tasks (no job row)."""
    _ensure_lease_row(engine, key)
    with transaction(engine) as session:
        lease = session.get(JobLease, key, with_for_update=True)
        assert lease is not None  # inserted above; leases are never deleted
        if lease.expires_at > now:
            return None
        lease.owner, lease.job_id, lease.expires_at = owner, None, until
        session.add(lease)
        return lease


def _interrupted_problems(job: Job) -> list[str]:
    problems = [
        f"Job {job.id} stopped before it finished: the process running it ended "
        f"(it was at step {job.steps[-1]['name'] if job.steps else 'start'})"
    ]
    if job.deploy_id:
        problems.append(
            f"Deploy {job.deploy_id} was submitted: see how it ended in Setup > Deployment "
            "Status, then run it again"
        )
    return problems


@dataclass
class Progress:
    """Handed to the work: records steps and the deploy id of job ``job_id`` as they
    happen (each in its own short transaction, so other workers see them at once)."""

    engine: Engine
    job_id: int
    organization: str
    kind: str
    clock: Clock = _utc_now
    owner: str = field(default_factory=process_owner)

    def step(self, name: str) -> None:
        """Record that the job reached step ``name`` (``preflight``, ``deploying``...)."""
        at = self.clock().astimezone(UTC).isoformat()
        with transaction(self.engine) as session:
            job = session.get(Job, self.job_id, with_for_update=True)
            if job is not None:
                job.steps = [*job.steps, {"name": name, "at": at}]
                session.add(job)

    def deploy_id(self, deploy_id: str) -> None:
        """Record the Salesforce deploy id as soon as it is known."""
        with transaction(self.engine) as session:
            job = session.get(Job, self.job_id, with_for_update=True)
            if job is not None:
                job.deploy_id = deploy_id
                session.add(job)

    def renew(self, ttl: timedelta = LEASE_TTL) -> bool:
        """Extend this job's lease; ``False`` when it lost the lease (expired and taken)."""
        until = self.clock() + ttl
        with transaction(self.engine) as session:
            lease = session.get(JobLease, lease_key(self.organization, self.kind))
            if lease is None or lease.job_id != self.job_id:
                return False
            lease.expires_at = until
            session.add(lease)
            return True


def start_job(
    engine: Engine,
    organization: str,
    kind: str,
    *,
    clock: Clock = _utc_now,
    owner: str | None = None,
    ttl: timedelta = LEASE_TTL,
    actor: str | None = None,
) -> Progress:
    """Claim the organization's lease for ``kind`` and insert a running job, started by
    ``actor`` (``operator:<username>``, ``cli:<login>@<host>``, :data:`SCHEDULER`).

    Raises :class:`~sf_metadata.errors.JobBusy` (with ``job_id``) while another job of that
    kind runs for the organization. A job left running by a worker that stopped (lease
    expired) is recorded as failed first.
    """
    owner = owner or process_owner()
    key = lease_key(organization, kind)
    _ensure_lease_row(engine, key)
    now = clock()
    with transaction(engine) as session:
        lease = session.get(JobLease, key, with_for_update=True)
        assert lease is not None
        if lease.job_id is not None and lease.expires_at > now:
            raise JobBusy(
                f"a {lease_kind(kind)} job is already running for {organization} (job {lease.job_id}): "
                "wait for it to finish",
                job_id=lease.job_id,
            )
        if lease.job_id is not None:
            stale = session.get(Job, lease.job_id, with_for_update=True)
            if stale is not None and stale.state == JobState.RUNNING:
                stale.state = JobState.FAILED
                stale.problems = [*stale.problems, *_interrupted_problems(stale)]
                stale.finished_at = now
                session.add(stale)
        job = Job(
            organization_id=organization,
            kind=kind,
            state=JobState.RUNNING,
            owner=owner,
            started_by=actor[:340] if actor else None,
            created_at=now,
            started_at=now,
        )
        session.add(job)
        session.flush()
        assert job.id is not None
        lease.job_id, lease.owner, lease.expires_at = job.id, owner, now + ttl
        session.add(lease)
        job_id = job.id
    return Progress(engine, job_id, organization, kind, clock=clock, owner=owner)


def _finish(progress: Progress, outcome: JobOutcome) -> None:
    now = progress.clock()
    with transaction(progress.engine) as session:
        job = session.get(Job, progress.job_id, with_for_update=True)
        if job is not None:
            job.state = JobState.SUCCEEDED if outcome.succeeded else JobState.FAILED
            job.result = dict(outcome.result)
            job.problems = list(outcome.problems)
            job.finished_at = now
            session.add(job)
        lease = session.get(JobLease, lease_key(progress.organization, progress.kind))
        if lease is not None and lease.job_id == progress.job_id:
            lease.job_id, lease.owner, lease.expires_at = None, None, _EPOCH
            session.add(lease)


Work = Callable[[Progress], JobOutcome]


def _heartbeat(progress: Progress, stop: threading.Event, ttl: timedelta) -> None:
    interval = ttl.total_seconds() / 3
    while not stop.wait(interval):
        try:
            if not progress.renew(ttl):
                log.warning("job %s lost its lease", progress.job_id)
                return
        except AgentProvisionError as error:  # store briefly unavailable: try next beat
            log.warning("job %s could not renew its lease: %s", progress.job_id, error)


def run_job(progress: Progress, work: Work, *, ttl: timedelta = LEASE_TTL) -> JobView:
    """Run ``work`` for the started job in this thread (heartbeat beside it), record its
    outcome and release the lease; return the finished job. Never raises for a failure
    of the work (it is recorded: the problem lines, ``result["error"]`` naming the
    error's class or :data:`INTERNAL_ERROR`, and ``result["unreachable"]`` true for a
    Salesforce error a failed connection caused, ``deployer.preflight.unreachable``);
    :class:`~sf_metadata.errors.StoreUnavailable` from the final write propagates."""
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(progress, stop, ttl), name=f"job-{progress.job_id}-lease"
    )
    beat.daemon = True
    beat.start()
    try:
        try:
            outcome = work(progress)
        except AgentProvisionError as error:
            log.warning(
                "job %s (%s) of organization %s failed: %s",
                progress.job_id,
                progress.kind,
                progress.organization,
                "; ".join(error.problems or (error.message,)),
            )
            # The error's class, so a page can say what to do about it (the problem
            # lines alone cannot tell a network failure from a refused login).
            result: dict[str, Any] = {"error": type(error).__name__}
            if isinstance(error, SalesforceError) and unreachable(error):
                result["unreachable"] = True
            outcome = JobOutcome(False, result=result, problems=error.problems or (error.message,))
        except Exception:
            log.exception("job %s (%s) failed", progress.job_id, progress.kind)
            outcome = JobOutcome(
                False,
                result={"error": INTERNAL_ERROR},
                problems=("Internal error: see the service log, then try again",),
            )
    finally:
        stop.set()
        beat.join(timeout=5)
    _finish(progress, outcome)
    with transaction(progress.engine, read_only=True) as session:
        view = get_job(session, progress.job_id, now=progress.clock())
    assert view is not None
    return view


def start_in_background(
    engine: Engine,
    organization: str,
    kind: str,
    work: Work,
    *,
    clock: Clock = _utc_now,
    ttl: timedelta = LEASE_TTL,
    actor: str | None = None,
) -> int:
    """Start the job (raises :class:`~sf_metadata.errors.JobBusy` at once when one runs)
    and run ``work`` in a daemon thread; return the job id."""
    progress = start_job(engine, organization, kind, clock=clock, ttl=ttl, actor=actor)

    def target() -> None:
        try:
            run_job(progress, work, ttl=ttl)
        except Exception:  # the store went away at the end: the lease expires by itself
            log.exception("job %s could not record its outcome", progress.job_id)

    thread = threading.Thread(target=target, name=f"job-{progress.job_id}")
    thread.daemon = True
    thread.start()
    return progress.job_id
