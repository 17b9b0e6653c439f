"""Background jobs (``receiver/jobs.py``) and the periodic scheduler
(``receiver/scheduler.py``): one job per organization and kind across engines (workers),
a crashed worker's lease expiring, steps and results in the store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from receiver.db import make_engine, transaction
from receiver.jobs import (
    JobKind,
    JobOutcome,
    JobState,
    Progress,
    get_job,
    latest_jobs,
    run_job,
    start_in_background,
    start_job,
)
from receiver.scheduler import PeriodicTask, Scheduler
from sf_metadata.errors import JobBusy, PreflightError
from tests.conftest import MakeOrganization


class StepClock:
    """A settable aware UTC clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def org(engine: Engine, make_organization: MakeOrganization) -> str:
    with transaction(engine) as session:
        organization, _ = make_organization(session, name="acme")
    return organization.id


@pytest.fixture
def other_worker(database_url: str) -> Iterator[Engine]:
    """A second engine on the same store: another worker process's view."""
    eng = make_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()


def _view(engine: Engine, job_id: int, clock: Callable[[], datetime]) -> object:
    with transaction(engine, read_only=True) as session:
        return get_job(session, job_id, now=clock())


def test_steps_and_result_are_stored_and_the_lease_released(engine: Engine, org: str) -> None:
    clock = StepClock()
    progress = start_job(engine, org, JobKind.REFRESH_WEBHOOK, clock=clock)

    def work(p: Progress) -> JobOutcome:
        p.step("preflight")
        clock.advance(seconds=1)
        p.step("deploying")
        p.deploy_id("0Af000000000001AAA")
        return JobOutcome(True, {"outcome": "succeeded"})

    view = run_job(progress, work)
    assert view.state is JobState.SUCCEEDED
    assert [name for name, _ in view.steps] == ["preflight", "deploying"]
    assert view.steps[1][1] - view.steps[0][1] == timedelta(seconds=1)
    assert view.deploy_id == "0Af000000000001AAA"
    assert view.result == {"outcome": "succeeded"}
    # released: the next job starts at once
    run_job(start_job(engine, org, JobKind.REFRESH_WEBHOOK, clock=clock), work)


def test_a_second_job_of_a_kind_is_refused_from_another_worker(
    engine: Engine, other_worker: Engine, org: str
) -> None:
    clock = StepClock()
    first = start_job(engine, org, JobKind.REFRESH_WEBHOOK, clock=clock)
    with pytest.raises(JobBusy) as busy:
        start_job(other_worker, org, JobKind.REFRESH_WEBHOOK, clock=clock)
    assert busy.value.job_id == first.job_id
    assert f"job {first.job_id}" in busy.value.message
    # another kind is independent
    start_job(other_worker, org, JobKind.RECONCILE, clock=clock)


def test_racing_starts_let_exactly_one_run(engine: Engine, other_worker: Engine, org: str) -> None:
    barrier = threading.Barrier(4)
    started: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def attempt(eng: Engine) -> None:
        barrier.wait(timeout=10)
        try:
            progress = start_job(eng, org, JobKind.REFRESH_WEBHOOK)
        except JobBusy as error:
            with lock:
                refused.append(error.job_id or 0)
        else:
            with lock:
                started.append(progress.job_id)

    threads = [threading.Thread(target=attempt, args=(e,)) for e in (engine, other_worker) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(started) == 1 and len(refused) == 3
    assert set(refused) == set(started)


def test_a_crashed_workers_job_reads_interrupted_then_is_taken_over(
    engine: Engine, other_worker: Engine, org: str
) -> None:
    clock = StepClock()
    crashed = start_job(engine, org, JobKind.REFRESH_WEBHOOK, clock=clock)
    crashed.step("waiting for Salesforce")
    crashed.deploy_id("0Af000000000009AAA")
    clock.advance(seconds=61)  # nobody renewed the 60 s lease
    with transaction(other_worker, read_only=True) as session:
        view = get_job(session, crashed.job_id, now=clock())
    assert view is not None and view.state is JobState.INTERRUPTED
    successor = start_job(other_worker, org, JobKind.REFRESH_WEBHOOK, clock=clock)
    with transaction(other_worker, read_only=True) as session:
        old = get_job(session, crashed.job_id, now=clock())
        jobs = latest_jobs(session, org, JobKind.REFRESH_WEBHOOK, now=clock())
    assert old is not None and old.state is JobState.FAILED
    assert any("0Af000000000009AAA" in p and "Deployment Status" in p for p in old.problems)
    assert [j.id for j in jobs] == [successor.job_id, crashed.job_id]
    assert jobs[0].state is JobState.RUNNING


def test_a_renewed_lease_keeps_the_job_running(engine: Engine, org: str) -> None:
    clock = StepClock()
    progress = start_job(engine, org, JobKind.REFRESH_WEBHOOK, clock=clock)
    clock.advance(seconds=50)
    assert progress.renew()
    clock.advance(seconds=50)
    with pytest.raises(JobBusy):
        start_job(engine, org, JobKind.REFRESH_WEBHOOK, clock=clock)


def test_errors_of_the_tree_fail_the_job_with_their_problems(engine: Engine, org: str) -> None:
    def work(_p: Progress) -> JobOutcome:
        raise PreflightError("first", problems=("first", "second"))

    view = run_job(start_job(engine, org, JobKind.REFRESH_WEBHOOK), work)
    assert view.state is JobState.FAILED and view.problems == ("first", "second")


def test_an_unexpected_exception_fails_the_job_without_its_text(engine: Engine, org: str) -> None:
    def work(_p: Progress) -> JobOutcome:
        raise RuntimeError("secret-looking detail")

    view = run_job(start_job(engine, org, JobKind.REFRESH_WEBHOOK), work)
    assert view.state is JobState.FAILED
    assert "secret-looking detail" not in " ".join(view.problems)
    assert "Internal error" in view.problems[0]


def test_background_job_is_refused_twice_and_finishes(engine: Engine, org: str) -> None:
    release = threading.Event()

    def work(p: Progress) -> JobOutcome:
        p.step("deploying")
        assert release.wait(timeout=10)
        return JobOutcome(True, {"n": 1})

    job_id = start_in_background(engine, org, JobKind.REFRESH_WEBHOOK, work)
    with pytest.raises(JobBusy):
        start_in_background(engine, org, JobKind.REFRESH_WEBHOOK, work)
    release.set()
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    view = None
    while datetime.now(UTC) < deadline:
        with transaction(engine, read_only=True) as session:
            view = get_job(session, job_id)
        if view is not None and view.done:
            break
        threading.Event().wait(0.02)
    assert view is not None and view.state is JobState.SUCCEEDED and view.result == {"n": 1}


def test_scheduler_runs_a_task_once_per_interval_across_workers(
    engine: Engine, other_worker: Engine
) -> None:
    clock = StepClock()
    ran: list[str] = []
    task = PeriodicTask("probe", timedelta(hours=1), lambda _e, _now: ran.append("x"))
    a = Scheduler(engine, [task], clock=clock)
    b = Scheduler(other_worker, [task], clock=clock)
    assert a.run_due() == ["probe"]
    assert b.run_due() == [] and a.run_due() == []
    clock.advance(minutes=61)
    assert b.run_due() == ["probe"]
    assert ran == ["x", "x"]


def test_a_failing_task_does_not_stop_the_others(engine: Engine) -> None:
    ran: list[str] = []

    def boom(_e: Engine, _now: datetime) -> None:
        raise RuntimeError("boom")

    scheduler = Scheduler(
        engine,
        [
            PeriodicTask("boom", timedelta(minutes=5), boom),
            PeriodicTask("ok", timedelta(minutes=5), lambda _e, _n: ran.append("ok")),
        ],
    )
    assert scheduler.run_due() == ["boom", "ok"] and ran == ["ok"]


def test_started_scheduler_stops_promptly(engine: Engine) -> None:
    done = threading.Event()
    scheduler = Scheduler(
        engine, [PeriodicTask("t", timedelta(hours=1), lambda _e, _n: done.set())], tick=3600
    )
    scheduler.start()
    assert done.wait(timeout=10)
    scheduler.stop(timeout=5)
    assert scheduler._thread is None


def test_a_sync_of_chosen_users_shares_the_reconcile_lease_but_not_its_history(
    engine: Engine, other_worker: Engine, org: str
) -> None:
    """``reconcile-users`` (Sync now) and ``reconcile`` never run at once for an
    organization, and the organization's reconcile history lists only its reconcile runs."""
    clock = StepClock()
    sync = start_job(engine, org, JobKind.RECONCILE_USERS, clock=clock)
    with pytest.raises(JobBusy) as busy:
        start_job(other_worker, org, JobKind.RECONCILE, clock=clock)
    assert busy.value.job_id == sync.job_id
    assert busy.value.message.startswith("a reconcile job is already running")
    run_job(sync, lambda p: JobOutcome(True))
    full = start_job(other_worker, org, JobKind.RECONCILE, clock=clock)
    with pytest.raises(JobBusy):
        start_job(engine, org, JobKind.RECONCILE_USERS, clock=clock)
    with transaction(engine, read_only=True) as session:
        (running,) = latest_jobs(session, org, JobKind.RECONCILE, now=clock())
        (done,) = latest_jobs(session, org, JobKind.RECONCILE_USERS, now=clock())
        # the running reconcile reads as running: its lease is the one the sync shared
        assert (running.id, running.state) == (full.job_id, JobState.RUNNING)
        assert (done.id, done.state) == (sync.job_id, JobState.SUCCEEDED)
        view = get_job(session, sync.job_id, now=clock())
        assert view is not None and view.kind == "reconcile-users"


def test_a_job_records_who_started_it(engine: Engine, org: str) -> None:
    clock = StepClock()
    started = start_job(engine, org, JobKind.REFRESH_WEBHOOK, clock=clock, actor="operator:ops")
    run_job(started, lambda p: JobOutcome(True))
    unknown = start_job(engine, org, JobKind.REPLAY, clock=clock)
    with transaction(engine, read_only=True) as session:
        view = get_job(session, started.job_id, now=clock())
        assert view is not None and view.started_by == "operator:ops"
        other = get_job(session, unknown.job_id, now=clock())
        assert other is not None and other.started_by is None
