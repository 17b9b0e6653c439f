"""Faults in the middle of a run, bounded (issue 4, item 4).

A client that, like Salesforce, retries every message that got no 200 Ack (reference
``outbound-wire-format.md`` section 2.2) must end with nothing lost and nothing applied
twice: every message acknowledged, ``users --json`` equal to the oracle (newest change per
user), and in the provisioning log each notification id applied at most once.

Faults:
- the store goes down and comes back: on PostgreSQL the test database refuses new
  connections (``ALLOW_CONNECTIONS false``) and its open ones are terminated
  (``pg_terminate_backend``), then it is allowed again; the receiver must answer 503 (no
  Ack) meanwhile. On SQLite another process holds the write lock (``BEGIN EXCLUSIVE``)
  for a while, then commits.
- the server is killed with SIGKILL (supervisor and workers) while requests are in flight,
  and restarted on the same port.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench._client import Poster
from bench._messages import BENCH_ORG_ID
from bench._pg import is_postgres, set_outage
from bench._server import ServerProcess, harness_env
from bench._soak import Scenario, applied_counts, build_scenario, compare_with_oracle, oracle
from bench._stores import postgres_server_url
from tests.in_process_cli import InProcessCli

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # real uvicorn processes


class Harness:
    """One store, one server (restartable on the same port), one organization."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.env = harness_env()
        self.workers = 2 if is_postgres(database_url) else 1
        self.log_dir = log_dir
        self.starts = 0
        self.server = self._new_server(port=None)
        self.cli = InProcessCli(database_url, env=self.env)
        self.webhook = self.cli.add_org("faults", BENCH_ORG_ID, base_url=self.server.base_url)

    def _new_server(self, port: int | None) -> ServerProcess:
        self.starts += 1
        return ServerProcess(
            self.database_url,
            port=port,
            workers=self.workers,
            env=self.env,
            log_path=self.log_dir / f"serve-{self.starts}.log",
            sample_rss=False,
        ).start()

    def restart(self) -> None:
        """Start a new server on the same port (after a kill)."""
        self.server = self._new_server(port=self.server.port)

    def check(self, scenario: Scenario, poster: Poster) -> None:
        """Nothing lost, nothing applied twice."""
        assert [d.index for d in poster.deliveries if not d.acked] == []
        assert compare_with_oracle(self.cli.users("faults"), oracle(scenario.changes)) == []
        applied, logged = applied_counts(self.database_url, "faults")
        assert {n for n, count in applied.items() if count > 1} == set()
        assert {c.notification_id for c in scenario.changes} <= logged


@pytest.fixture
def harness(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(database_url, tmp_path)
    try:
        yield h
    finally:
        h.server.stop()


def _acked_and_in_flight(target: int) -> Callable[[Poster], bool]:
    return lambda p: p.acked >= target and p.inflight > 0


def _failed_more_than(failures: int) -> Callable[[Poster], bool]:
    return lambda p: p.failures > failures


def _scenario(seed: int) -> Scenario:
    return build_scenario(users=50, versions=4, seed=seed, run="fault", max_batch=10)


def test_sigkill_in_the_middle_of_requests_loses_nothing_and_applies_nothing_twice(
    harness: Harness,
) -> None:
    scenario = _scenario(seed=21)
    poster = Poster(
        harness.webhook,
        scenario.messages,
        concurrency=4,
        retry=True,
        max_attempts=80,
        request_timeout=20,
    ).start()
    kills = 0
    for target in (len(scenario.messages) // 4, len(scenario.messages) // 2):
        # SIGKILL (and reap) in the first state with ``target`` Acks and a request in
        # flight, before the clients can see another answer
        assert poster.wait_for(_acked_and_in_flight(target), timeout=60, then=harness.server.kill)
        kills += 1
        assert poster.wait_for(_failed_more_than(poster.failures), timeout=30)
        harness.restart()
    poster.join(timeout=240)

    assert kills == 2 and poster.failures > 0  # the kills really cut deliveries
    harness.check(scenario, poster)


def test_store_outage_in_the_middle_of_a_run_loses_nothing(
    harness: Harness, database_url: str
) -> None:
    scenario = _scenario(seed=33)
    poster = Poster(
        harness.webhook,
        scenario.messages,
        concurrency=4,
        retry=True,
        max_attempts=80,
        request_timeout=60,
    )
    if is_postgres(database_url):
        server_url = postgres_server_url()
        assert server_url is not None
        poster.start()
        assert poster.wait_for(lambda p: p.acked >= len(scenario.messages) // 4, timeout=60)
        set_outage(server_url, database_url, down=True)
        try:
            seen = poster.failures
            # the store is down: deliveries fail (503, no Ack) and are retried
            assert poster.wait_for(lambda p: p.failures >= seen + 3, timeout=60)
            acked_during = poster.acked
            assert not poster.wait_for(lambda p: p.acked > acked_during + 4, timeout=1.0)
        finally:
            set_outage(server_url, database_url, down=False)
        poster.join(timeout=240)
        statuses = {s for d in poster.deliveries for s in d.statuses}
        assert 503 in statuses
    else:
        path = make_url(database_url).database
        assert path is not None
        lock = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            poster.start()
            assert poster.wait_for(lambda p: p.acked >= len(scenario.messages) // 4, timeout=60)
            poster.hold()  # a known state: nothing in flight, messages left to send
            assert poster.wait_for(lambda p: p.inflight == 0, timeout=60)
            assert poster.acked < len(scenario.messages)
            lock.execute("BEGIN EXCLUSIVE")  # the store refuses every writer meanwhile
            acked_before = poster.acked
            poster.release()
            assert poster.wait_for(lambda p: p.inflight > 0, timeout=60)
            # writers wait for the lock: no message is acknowledged while it is held
            assert not poster.wait_for(lambda p: p.acked > acked_before, timeout=1.5)
            lock.execute("COMMIT")
        finally:
            lock.close()
        poster.join(timeout=240)
    harness.check(scenario, poster)
