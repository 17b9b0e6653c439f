"""Reconcile as a job: one at a time per organization across workers and hosts.

Every way a run starts goes through here, so two never overlap (``receiver.jobs`` leases,
``JobKind.RECONCILE``): ``reconcile run`` (:func:`run_in_foreground`), the Reconcile page's
buttons and the on-enable action (:func:`start_in_background`), and ``serve``'s periodic
incremental run (:func:`scheduled_runs`). A second start while one runs is refused with
:class:`~sf_metadata.errors.JobBusy` (the CLI exits 1 naming the running job).

:func:`connected_reader` is the one way to reach the org: the credentials of CONTRACT
section 4 (flags, environment, then the stored connection) through
``receiver.salesforce_login.salesforce_client``, the login and every later request counted.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests
from sqlalchemy.engine import Engine
from sqlmodel import select

from deployer.package import PINNED_API_VERSION
from deployer.users import CallCounter, ClientSession, UserReader
from receiver._logging import LOGGER_NAME
from receiver.db import transaction
from receiver.jobs import SCHEDULER, JobKind, JobOutcome, Progress, run_job, start_job
from receiver.jobs import start_in_background as start_job_in_background
from receiver.models import Organization
from receiver.reconcile.run import RunResult, reconcile
from sf_metadata.errors import AgentProvisionError, JobBusy, SalesforceError, SalesforceUnreadable
from sf_metadata.reconcile import DEFAULT_GUARD, DeletionGuard

__all__ = [
    "JobSink",
    "ReaderFactory",
    "connected_reader",
    "run_in_foreground",
    "scheduled_runs",
    "start_in_background",
    "stored_reader_factory",
]

log = logging.getLogger(LOGGER_NAME)

#: ``(organization) -> UserReader``: how a job reaches Salesforce.
ReaderFactory = Callable[[str], UserReader]


def connected_reader(
    engine: Engine,
    key: bytes,
    organization: str,
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> UserReader:
    """A :class:`UserReader` for ``organization`` (module docstring). Raises
    ``CredentialsError`` (exit 2), ``AuthenticationError`` (exit 3),
    :class:`SalesforceUnreadable` when Salesforce cannot be reached (exit 9)."""
    from receiver.salesforce_login import salesforce_client

    counter = CallCounter()
    login_http = counter.attach(requests.Session())
    try:
        resolved = salesforce_client(
            engine,
            key,
            organization,
            flags,
            environ,
            api_version=PINNED_API_VERSION,
            client_id=client_id,
            client_secret=client_secret,
            http=login_http,
        )
    except SalesforceError as error:
        if type(error) is SalesforceError:
            raise SalesforceUnreadable(f"{error.message}: nothing was read or written") from None
        raise
    for line in resolved.warnings:
        if warn is not None:
            warn(line)
    # A plain session for the pages: no retry adapter, so every attempt is counted.
    return UserReader(
        requests.Session(), ClientSession(resolved.client), PINNED_API_VERSION, counter
    )


def stored_reader_factory(engine: Engine, settings: Any) -> ReaderFactory:
    """``(organization) -> UserReader`` with the stored connection only (the dashboard,
    the scheduler and the on-enable action: no flags, no environment)."""
    from receiver.secrets import load_key

    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    client_secret = settings.salesforce_client_secret
    key = load_key(settings.database_url, secret)
    return lambda name: connected_reader(
        engine,
        key,
        name,
        {},
        {},
        client_id=settings.salesforce_client_id,
        client_secret=client_secret.get_secret_value() if client_secret else None,
    )


class JobSink:
    """A ``ProgressSink`` recording steps in the job, in users: ``reading: 4,000 of
    50,000 users, 1,200 users/s, about 38 s left`` (one step per page)."""

    def __init__(self, progress: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        self._progress = progress
        self._clock = clock
        self._total: int | None = None
        self._done = 0
        self._started = clock()

    def phase(self, name: str) -> None:
        self._progress.step(name)

    def total(self, users: int) -> None:
        self._total = users
        self._started = self._clock()

    def advance(self, users: int) -> None:
        self._done += users
        elapsed = max(self._clock() - self._started, 1e-6)
        rate = self._done / elapsed
        text = (
            f"reading: {self._done:,} of {self._total or self._done:,} users, {rate:,.0f} users/s"
        )
        if self._total and rate > 0 and self._total > self._done:
            text += f", about {int((self._total - self._done) / rate) + 1} s left"
        self._progress.step(text)


def _outcome(result: RunResult) -> JobOutcome:
    data: dict[str, Any] = {**result.to_json(), "holdReason": result.hold_reason}
    problems = (result.hold_reason,) if result.hold_reason else ()
    return JobOutcome(True, result=data, problems=problems)


def run_in_foreground(
    engine: Engine,
    organization: str,
    reader_factory: ReaderFactory,
    *,
    full: bool = True,
    dry_run: bool = False,
    guard: DeletionGuard = DEFAULT_GUARD,
    progress: Any = None,
    user_ids: Sequence[str] | None = None,
    actor: str | None = None,
    on_job: Callable[[int], None] | None = None,
) -> RunResult:
    """Run one reconcile in this thread as a job (lease held: another run of this
    organization, anywhere, is refused with :class:`JobBusy`); with ``user_ids`` of only
    those Users (``receiver.reconcile.run.reconcile``; a ``reconcile-users`` job, under the
    reconcile's lease; ``on_job`` hears the job's id once it started). Errors of the run
    are recorded in the job and raised again here, so the CLI and the agent page keep
    their own words."""
    kind = JobKind.RECONCILE if user_ids is None else JobKind.RECONCILE_USERS
    job = start_job(engine, organization, kind, actor=actor)
    if on_job is not None:  # the caller's way to this very job (its problems, if it fails)
        on_job(job.job_id)
    box: dict[str, Any] = {}

    def work(p: Progress) -> JobOutcome:
        try:
            result = reconcile(
                engine,
                organization,
                reader_factory(organization),
                full=full,
                dry_run=dry_run,
                guard=guard,
                progress=progress,
                user_ids=user_ids,
                actor=actor,
            )
        except Exception as error:
            box["error"] = error
            raise
        box["result"] = result
        return _outcome(result)

    run_job(job, work)
    if "error" in box:
        raise box["error"]
    result = box["result"]
    assert isinstance(result, RunResult)
    return result


def start_in_background(
    engine: Engine,
    organization: str,
    reader_factory: ReaderFactory,
    *,
    full: bool = True,
    dry_run: bool = False,
    actor: str | None = None,
) -> int:
    """Start one reconcile in a daemon thread as a job (started by ``actor``); return its
    id. Raises :class:`JobBusy` at once when one runs for the organization."""

    def work(p: Progress) -> JobOutcome:
        result = reconcile(
            engine,
            organization,
            reader_factory(organization),
            full=full,
            dry_run=dry_run,
            progress=JobSink(p),
            actor=actor,
        )
        return _outcome(result)

    return start_job_in_background(engine, organization, JobKind.RECONCILE, work, actor=actor)


def scheduled_runs(engine: Engine, now: datetime, reader_factory: ReaderFactory) -> list[str]:
    """``serve``'s periodic task: an incremental run (users changed since the last applied
    watermark, minus the overlap; a full one when there is none) for every enabled
    organization with a stored Salesforce connection, one after the other in this
    thread; an organization whose reconcile is running is skipped. Returns the
    organizations run. Failures are recorded in their jobs, never raised."""
    from receiver.salesforce_connection import SalesforceConnection

    with transaction(engine, read_only=True) as session:
        names = list(
            session.exec(
                select(Organization.id)
                .join(SalesforceConnection, SalesforceConnection.organization_id == Organization.id)  # type: ignore[arg-type]
                .where(Organization.enabled == True)  # noqa: E712
                .order_by(Organization.id)
            )
        )
    ran: list[str] = []
    for name in names:
        try:
            job = start_job(engine, name, JobKind.RECONCILE, actor=SCHEDULER)
        except JobBusy:
            continue

        def work(p: Progress, name: str = name) -> JobOutcome:
            result = reconcile(
                engine,
                name,
                reader_factory(name),
                full=False,
                progress=JobSink(p),
                actor=SCHEDULER,
            )
            return _outcome(result)

        try:
            run_job(job, work)
            ran.append(name)
        except AgentProvisionError as error:  # the store failed at the end: next time
            log.warning("scheduled reconcile of %s: %s", name, error)
    del now
    return ran


def environment() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ
