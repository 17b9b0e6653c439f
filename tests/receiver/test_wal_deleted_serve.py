"""A real ``serve`` whose SQLite ``-wal``/``-shm`` are deleted while it serves, then killed
with SIGKILL (ATTACK finding 2): every acknowledged message must be in the store the next
process opens. Before the guard checked the WAL, all of them were acknowledged into the
unlinked WAL and none survived the kill."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._client import Poster
from bench._messages import BENCH_ORG_ID
from bench._server import ServerProcess, harness_env
from bench._soak import build_scenario, compare_with_oracle, oracle
from tests.in_process_cli import InProcessCli

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


@pytest.mark.parametrize("workers", [1, 2])
def test_messages_acknowledged_after_the_wal_was_deleted_survive_sigkill(
    tmp_path: Path, workers: int
) -> None:
    path = tmp_path / "store" / "agent_provision.db"
    url = f"sqlite:///{path}"
    env = harness_env()
    scenario = build_scenario(users=30, versions=1, seed=5, run="wal", max_batch=3)
    half = len(scenario.messages) // 2
    server = ServerProcess(
        url, workers=workers, env=env, log_path=tmp_path / "serve.log", sample_rss=False
    )
    server.start()
    try:
        cli = InProcessCli(url, env=env)
        webhook = cli.add_org("wal", BENCH_ORG_ID, base_url=server.base_url)
        first = Poster(webhook, scenario.messages[:half], concurrency=2, retry=True).start()
        assert all(d.acked for d in first.join(timeout=90))
        assert path.with_name(path.name + "-wal").exists()
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink()
        second = Poster(webhook, scenario.messages[half:], concurrency=2, retry=True).start()
        assert all(d.acked for d in second.join(timeout=90))
    finally:
        server.kill()  # SIGKILL: no checkpoint on close
    assert compare_with_oracle(cli.users("wal"), oracle(scenario.changes)) == []
