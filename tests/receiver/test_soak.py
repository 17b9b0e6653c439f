"""Load and ordering soak, short and bounded (issue 4, item 3).

``agent-provision serve`` runs as a real subprocess on 127.0.0.1: 4 workers on PostgreSQL,
1 on SQLite. Concurrent clients send, for a set of users, creates, updates, deactivations
and reactivations, batched, duplicated, re-batched and out of order, retrying like
Salesforce until acknowledged. At the end ``users --json`` equals the oracle (the newest
change of each user by ``SystemModstamp``, CONTRACT section 2) and the provisioning log
shows each notification id applied at most once. The longer run is
``python -m bench.ingest --soak`` (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._client import Poster
from bench._messages import BENCH_ORG_ID
from bench._pg import is_postgres
from bench._server import ServerProcess, harness_env
from bench._soak import applied_counts, build_scenario, compare_with_oracle, oracle
from tests.in_process_cli import InProcessCli

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # real uvicorn processes


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, InProcessCli, str]]:
    """(server, CLI, webhook URL) of an enabled organization ``soak`` on a fresh store;
    the server is stopped at the end."""
    env = harness_env()
    workers = 4 if is_postgres(database_url) else 1
    server = ServerProcess(
        database_url, workers=workers, env=env, log_path=tmp_path / "serve.log", sample_rss=False
    ).start()
    try:
        cli = InProcessCli(database_url, env=env)
        webhook = cli.add_org("soak", BENCH_ORG_ID, base_url=server.base_url)
        yield server, cli, webhook
    finally:
        server.stop()


def test_concurrent_out_of_order_deliveries_end_at_the_newest_change(
    served: tuple[ServerProcess, InProcessCli, str], database_url: str
) -> None:
    server, cli, webhook = served
    scenario = build_scenario(users=60, versions=5, seed=11, run="soak", max_batch=20)
    assert len(scenario.messages) > len({c.user for c in scenario.changes}) // 20

    poster = Poster(webhook, scenario.messages, concurrency=8, retry=True, max_attempts=40)
    deliveries = poster.run()

    assert [d.index for d in deliveries if not d.acked] == []
    problems = compare_with_oracle(cli.users("soak"), oracle(scenario.changes))
    assert problems == []
    applied, logged = applied_counts(database_url, "soak")
    assert {n for n, count in applied.items() if count > 1} == set()
    assert {c.notification_id for c in scenario.changes} <= logged
    # the scenario really exercised the rules: some changes were stale or duplicate
    total_notifications = sum(len(b) for b in scenario.batches)
    assert sum(applied.values()) < total_notifications


def test_the_oracle_disagrees_with_a_store_that_kept_an_older_change() -> None:
    scenario = build_scenario(users=3, versions=4, seed=2, run="x")
    expected = oracle(scenario.changes)
    assert expected
    agents = [
        {
            "crmId": crm_id,
            "username": want["username"],
            "name": want["name"] + " (older)",
            "disabled": want["disabled"],
            "crm": {"customFields": want["customFields"]},
        }
        for crm_id, want in expected.items()
    ]
    problems = compare_with_oracle(agents, expected)
    assert len(problems) == len(expected) and all("newest change says" in p for p in problems)
    assert compare_with_oracle([], expected) == [
        f"{crm_id}: missing, but its newest change is active" for crm_id in sorted(expected)
    ]
