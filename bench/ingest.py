"""Ingest benchmark and ordering soak of the receiver (issue 4). Run from the repo root::

    .venv/bin/python -m bench.ingest                       # SQLite, 1 worker, 200 x 100
    .venv/bin/python -m bench.ingest --database-url postgresql+psycopg://postgres@/postgres?host=/tmp/pg --workers 4
    .venv/bin/python -m bench.ingest --soak --users 2000 --versions 6 --clients 8

Default mode: builds M Outbound Messages (default 200) of 100 User notifications each (exact
wire format, realistic fields, custom fields ``Team__c`` and ``Skill_Level__c``), starts
``agent-provision serve`` on 127.0.0.1 (free port) with a temporary SQLite store (or a fresh
database created on the PostgreSQL server of ``--database-url``, dropped after), registers
and enables an organization with the CLI, posts the messages from K concurrent clients
(default 4), checks every message got a 200 Ack and that ``users --json`` lists every
agent, and prints: notifications/s end to end, p50/p99 time to Ack per message, peak RSS of
the server process tree, the parse floor (lxml and defusedxml, same bytes, one process)
and ``ratio: X`` = end to end / lxml floor.

``--soak``: concurrent clients send creates, updates, deactivations and reactivations of a
set of users, with duplicates and out of order, retrying like Salesforce until acknowledged;
then the store must equal the oracle (newest change of each user) and the provisioning log
must show each notification applied at most once. Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._client import Poster  # noqa: E402
from bench._floor import measure_floor  # noqa: E402
from bench._messages import BENCH_ORG_ID, bench_changes, render_message  # noqa: E402
from bench._pg import create_database, drop_database, is_postgres  # noqa: E402
from bench._server import Cli, ServerProcess, free_port, harness_env  # noqa: E402
from bench._soak import applied_counts, build_scenario, compare_with_oracle, oracle  # noqa: E402

__all__ = ["main", "percentile", "say"]


def say(line: str) -> None:
    """Write one line of the report on standard output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of non-empty ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def machine() -> str:
    """One line: CPU model, ``nproc``, total memory, Python."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import psutil

    mem = psutil.virtual_memory().total / 2**30
    return f"{cpu}, nproc={os.cpu_count()}, RAM {mem:.1f} GiB, Python {platform.python_version()}"


def _loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"


@contextmanager
def store(database_url: str | None, keep: bool) -> Iterator[str]:
    """A store URL for one run: a temporary SQLite file, or a fresh database on the
    PostgreSQL server of ``database_url`` (dropped after unless ``keep``); any other URL is
    used as given."""
    if database_url is None:
        tmp = tempfile.mkdtemp(prefix="agent-bench-")
        try:
            yield f"sqlite:///{tmp}/bench.db"
        finally:
            if not keep:
                shutil.rmtree(tmp, ignore_errors=True)
        return
    if is_postgres(database_url):
        url = create_database(database_url)
        try:
            yield url
        finally:
            if not keep:
                drop_database(database_url, url)
        return
    yield database_url


def _serve(url: str, args: argparse.Namespace, log: Path) -> tuple[ServerProcess, Cli, str, str]:
    env = harness_env()
    server = ServerProcess(url, port=free_port(), workers=args.workers, env=env, log_path=log)
    server.start()
    try:
        cli = Cli(url, env=env)
        org = f"bench-{secrets.token_hex(3)}"
        webhook = cli.add_org(org, BENCH_ORG_ID, base_url=server.base_url)
    except BaseException:
        server.stop()
        raise
    return server, cli, org, webhook


def run_ingest(args: argparse.Namespace) -> int:
    """The default mode; returns the exit status."""
    run = secrets.token_hex(3)
    batches = bench_changes(args.messages, args.per_message, run=run)
    bodies = [render_message(batch) for batch in batches]
    total = args.messages * args.per_message
    say(f"machine: {machine()}")
    say(f"load average before: {_loadavg()}")
    with store(args.database_url, args.keep) as url, tempfile.TemporaryDirectory() as tmp:
        backend = "postgresql" if is_postgres(url) else url.split(":", 1)[0]
        say(f"store: {backend}, serve --workers {args.workers}")
        say(
            f"load: {args.messages} messages x {args.per_message} notifications, "
            f"{args.clients} concurrent clients ({sum(map(len, bodies)) / 2**20:.1f} MiB)"
        )
        server, cli, org, webhook = _serve(url, args, Path(tmp) / "serve.log")
        try:
            start = time.perf_counter()
            deliveries = Poster(webhook, bodies, concurrency=args.clients).run()
            elapsed = time.perf_counter() - start
        finally:
            server.stop()
        failed = [d for d in deliveries if not d.acked]
        agents = cli.users(org)
        if args.show_log:
            say((Path(tmp) / "serve.log").read_text()[-4000:])
    acks = [d.ack_seconds * 1000 for d in deliveries if d.ack_seconds is not None]
    e2e = total / elapsed
    say(f"load average after: {_loadavg()}")
    say(f"end to end: {e2e:,.0f} notifications/s ({total} in {elapsed:.2f} s)")
    if acks:
        say(
            f"time to Ack per message: p50 {percentile(acks, 50):.1f} ms, "
            f"p99 {percentile(acks, 99):.1f} ms"
        )
    say(f"server peak RSS (process tree): {server.peak_rss / 2**20:.0f} MiB")
    floor = measure_floor(bodies, rounds=args.floor_rounds)
    say(
        f"floor lxml (parse + extract, 1 process): {floor['lxml']:,.0f} notifications/s"
        " (per CPU second)"
    )
    say(f"floor defusedxml: {floor['defusedxml']:,.0f} notifications/s")
    if "receiver_parser" in floor:
        say(f"receiver parser (sf_metadata.soap): {floor['receiver_parser']:,.0f} notifications/s")
    say(f"agents: {len(agents)} (expected {total})")
    say(f"ratio: {e2e / floor['lxml']:.3f}")
    status = 0
    if failed:
        statuses = sorted({s for d in failed for s in d.statuses})
        say(f"FAILED: {len(failed)} messages without a 200 Ack (statuses {statuses})")
        status = 1
    if len(agents) != total:
        say(f"FAILED: {len(agents)} agents, expected {total}")
        status = 1
    return status


def run_soak(args: argparse.Namespace) -> int:
    """The ``--soak`` mode; returns the exit status."""
    run = secrets.token_hex(3)
    scenario = build_scenario(users=args.users, versions=args.versions, seed=args.seed, run=run)
    notes = sum(len(b) for b in scenario.batches)
    say(f"machine: {machine()}")
    say(
        f"soak: {args.users} users x {args.versions} changes = {len(scenario.changes)} changes "
        f"in {len(scenario.messages)} messages ({notes} notifications with re-batched and "
        f"duplicate deliveries), {args.clients} clients, seed {args.seed}"
    )
    with store(args.database_url, args.keep) as url, tempfile.TemporaryDirectory() as tmp:
        say(
            f"store: {'postgresql' if is_postgres(url) else url.split(':', 1)[0]}, "
            f"serve --workers {args.workers}"
        )
        server, cli, org, webhook = _serve(url, args, Path(tmp) / "serve.log")
        try:
            start = time.perf_counter()
            poster = Poster(webhook, scenario.messages, concurrency=args.clients, retry=True)
            deliveries = poster.run()
            elapsed = time.perf_counter() - start
        finally:
            server.stop()
        agents = cli.users(org)
        applied, logged = applied_counts(url, org)
    problems = compare_with_oracle(agents, oracle(scenario.changes))
    lost = [d.index for d in deliveries if not d.acked]
    twice = sorted(n for n, count in applied.items() if count > 1)
    missing = sorted({c.notification_id for c in scenario.changes} - logged)
    say(
        f"sent {poster.attempts} requests in {elapsed:.2f} s "
        f"({notes / elapsed:,.0f} notifications/s); {len(agents)} agents"
    )
    for line in problems[:20]:
        say(f"MISMATCH {line}")
    checks = {
        "every message acknowledged": not lost,
        "store equals the oracle": not problems,
        "no notification applied twice": not twice,
        "every notification logged": not missing,
    }
    for name, ok in checks.items():
        say(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--messages", type=int, default=200, help="messages to post (M)")
    parser.add_argument("--per-message", type=int, default=100, help="notifications per message")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (K)")
    parser.add_argument("--workers", type=int, default=1, help="passed to serve --workers")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server URL (a fresh database is created on it) or another store URL; "
        "default: a temporary SQLite file",
    )
    parser.add_argument("--keep", action="store_true", help="keep the store after the run")
    parser.add_argument("--floor-rounds", type=int, default=5, help="floor passes (best kept)")
    parser.add_argument("--show-log", action="store_true", help="print the tail of the server log")
    parser.add_argument("--soak", action="store_true", help="run the ordering soak instead")
    parser.add_argument("--users", type=int, default=1000, help="soak: users")
    parser.add_argument("--versions", type=int, default=6, help="soak: changes per user")
    parser.add_argument("--seed", type=int, default=4, help="soak: random seed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0: every check passed)."""
    args = _parser().parse_args(argv)
    if not 1 <= args.per_message <= 100:
        sys.stderr.write("--per-message must be 1..100 (Salesforce sends at most 100)\n")
        return 2
    return run_soak(args) if args.soak else run_ingest(args)


if __name__ == "__main__":
    sys.exit(main())
