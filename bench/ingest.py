"""Ingest benchmark, preload cost and ordering soak of the receiver (issues 4 and 11). Run
from the repo root::

    .venv/bin/python -m bench.ingest                 # SQLite 1 and 2 workers, PostgreSQL 4
    .venv/bin/python -m bench.ingest --database-url URL --workers N    # one configuration
    .venv/bin/python -m bench.ingest --preload       # cost per message at 1k/100k/1M agents
    .venv/bin/python -m bench.ingest --soak --users 2000 --versions 6 --clients 8

Default mode: builds M Outbound Messages (default 200) of 100 User notifications each (exact
wire format, realistic fields, custom fields ``Team__c`` and ``Skill_Level__c``) and, in
one run, for each configuration (SQLite with ``serve --workers 1`` and ``2``; PostgreSQL
with ``--workers 4`` on the server of ``--postgres-url`` or
``AGENT_PROVISION_TEST_POSTGRES_URL``, in a database created and dropped by the run):
starts ``agent-provision serve`` on 127.0.0.1 (free port), registers and enables an
organization with the CLI, posts the messages from K concurrent clients (default 4), checks
every message got a 200 Ack and that ``users --json`` lists every agent, and prints:
notifications/s end to end, p50/p99 time to Ack per message, server CPU per message (the
receiver's process tree; PostgreSQL's backends apart), each worker's share of that CPU
(how evenly the connections were spread), lock waits on PostgreSQL (sampled from
``pg_locks``), peak RSS; then the parse floor (lxml and defusedxml, same bytes, one
process, per CPU second), a Markdown table and ``ratio: X`` = end to end / lxml floor.

``--preload [N,N,...]``: see ``bench/_preload.py`` (in process, no HTTP).

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
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._client import Poster  # noqa: E402
from bench._floor import measure_floor  # noqa: E402
from bench._messages import BENCH_ORG_ID, bench_changes, render_message  # noqa: E402
from bench._pg import (  # noqa: E402
    LockWaitSampler,
    backend_cpu_seconds,
    create_database,
    drop_database,
    is_postgres,
)
from bench._preload import DEFAULT_LEVELS, run_preload  # noqa: E402
from bench._server import Cli, ServerProcess, free_port, harness_env  # noqa: E402
from bench._soak import applied_counts, build_scenario, compare_with_oracle, oracle  # noqa: E402
from bench._stores import postgres_server_url  # noqa: E402

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


@dataclass
class Figures:
    """What one configuration measured (times in ms, rates in notifications/s)."""

    label: str
    rate: float
    p50: float
    p99: float
    cpu_ms_per_message: float
    db_cpu_ms_per_message: float | None
    peak_rss_mib: float
    lock_wait_p99: float | None = None
    lock_wait_max: float | None = None
    ratio: float = 0.0
    ok: bool = True


def run_ingest(
    args: argparse.Namespace, bodies: list[bytes], database_url: str | None, workers: int
) -> Figures:
    """One configuration of the default mode: ``serve --workers workers`` on a fresh store
    (a temporary SQLite file, or a database created on the PostgreSQL server of
    ``database_url``); posts ``bodies`` from ``args.clients`` clients."""
    total = len(bodies) * args.per_message
    with store(database_url, args.keep) as url, tempfile.TemporaryDirectory() as tmp:
        backend = "postgresql" if is_postgres(url) else url.split(":", 1)[0]
        label = f"{backend}, serve --workers {workers}"
        say(f"--- {label}")
        run_args = argparse.Namespace(**{**vars(args), "workers": workers})
        server, cli, org, webhook = _serve(url, run_args, Path(tmp) / "serve.log")
        sampler = None
        try:
            db_cpu_before = backend_cpu_seconds(url) if backend == "postgresql" else 0.0
            if backend == "postgresql" and database_url is not None:
                sampler = LockWaitSampler(database_url, url).start()
            cpu_before = server.cpu_seconds()
            workers_before = server.worker_cpu_seconds()
            start = time.perf_counter()
            deliveries = Poster(webhook, bodies, concurrency=args.clients).run()
            elapsed = time.perf_counter() - start
            cpu = server.cpu_seconds() - cpu_before
            split = _shares(workers_before, server.worker_cpu_seconds())
            db_cpu = backend_cpu_seconds(url) - db_cpu_before if backend == "postgresql" else None
            waits = sampler.stop() if sampler is not None else None
        finally:
            if sampler is not None:
                sampler.stop()
            server.stop()
        failed = [d for d in deliveries if not d.acked]
        agents = cli.users(org)
        if args.show_log:
            say((Path(tmp) / "serve.log").read_text()[-4000:])
    acks = [d.ack_seconds * 1000 for d in deliveries if d.ack_seconds is not None]
    figures = Figures(
        label=label,
        rate=total / elapsed,
        p50=percentile(acks, 50) if acks else float("nan"),
        p99=percentile(acks, 99) if acks else float("nan"),
        cpu_ms_per_message=cpu / len(bodies) * 1000,
        db_cpu_ms_per_message=None if db_cpu is None else db_cpu / len(bodies) * 1000,
        peak_rss_mib=server.peak_rss / 2**20,
    )
    say(f"end to end: {figures.rate:,.0f} notifications/s ({total} in {elapsed:.2f} s)")
    say(f"time to Ack per message: p50 {figures.p50:.1f} ms, p99 {figures.p99:.1f} ms")
    say(f"server CPU per message: {figures.cpu_ms_per_message:.1f} ms (receiver process tree)")
    if figures.db_cpu_ms_per_message is not None:
        say(f"PostgreSQL backends CPU per message: {figures.db_cpu_ms_per_message:.1f} ms")
    if waits is not None:
        # every message without a sampled wait waited (about) 0 ms
        padded = [0.0] * max(0, len(bodies) - len(waits)) + waits
        figures.lock_wait_p99 = percentile(padded, 99)
        figures.lock_wait_max = max(waits, default=0.0)
        say(
            f"lock waits (pg_locks, sampled every 4 ms): {len(waits)} seen, p99 over "
            f"messages {figures.lock_wait_p99:.1f} ms, max {figures.lock_wait_max:.1f} ms"
        )
    if workers > 1 and split:
        say(f"CPU share of each worker: {' / '.join(f'{share:.0%}' for share in split)}")
    say(f"server peak RSS (process tree): {figures.peak_rss_mib:.0f} MiB")
    if failed:
        statuses = sorted({s for d in failed for s in d.statuses})
        say(f"FAILED: {len(failed)} messages without a 200 Ack (statuses {statuses})")
        figures.ok = False
    if len(agents) != total:
        say(f"FAILED: {len(agents)} agents, expected {total}")
        figures.ok = False
    return figures


def _shares(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each worker's part of the workers' CPU between two readings, largest first (how
    evenly the connections were spread: receiver.accept_balance)."""
    used = [after[pid] - before.get(pid, 0.0) for pid in after]
    total = sum(used)
    return sorted((u / total for u in used), reverse=True) if total > 0 else []


def _configs(args: argparse.Namespace) -> list[tuple[str | None, int]]:
    """(store URL or None for SQLite, workers) of each configuration to run."""
    if args.database_url is not None:
        return [(args.database_url, args.workers)]
    configs: list[tuple[str | None, int]] = [(None, 1), (None, 2)]
    pg = args.postgres_url or postgres_server_url()
    if pg:
        configs.append((pg, 4))
    else:
        say("(no PostgreSQL: pass --postgres-url or set AGENT_PROVISION_TEST_POSTGRES_URL)")
    return configs


def run_default(args: argparse.Namespace) -> int:
    """The default mode: every configuration, then the floor and the summary table."""
    run = secrets.token_hex(3)
    bodies = [render_message(b) for b in bench_changes(args.messages, args.per_message, run=run)]
    say(f"machine: {machine()}")
    say(f"load average before: {_loadavg()}")
    say(
        f"load: {args.messages} messages x {args.per_message} notifications, "
        f"{args.clients} concurrent clients ({sum(map(len, bodies)) / 2**20:.1f} MiB)"
    )
    results = [run_ingest(args, bodies, url, workers) for url, workers in _configs(args)]
    floor = measure_floor(bodies, rounds=args.floor_rounds)
    say(f"load average after: {_loadavg()}")
    say(
        f"floor lxml (parse + extract, 1 process): {floor['lxml']:,.0f} notifications/s"
        " (per CPU second)"
    )
    say(f"floor defusedxml: {floor['defusedxml']:,.0f} notifications/s")
    if "receiver_parser" in floor:
        say(f"receiver parser (sf_metadata.soap): {floor['receiver_parser']:,.0f} notifications/s")
    say("")
    say(
        "| store | notifications/s | p50 ms | p99 ms | server CPU ms/message "
        "| lock-wait p99 ms | ratio |"
    )
    say("|---|---|---|---|---|---|---|")
    for figures in results:
        figures.ratio = figures.rate / floor["lxml"]
        lock = "" if figures.lock_wait_p99 is None else f"{figures.lock_wait_p99:.1f}"
        cpu = f"{figures.cpu_ms_per_message:.1f}"
        if figures.db_cpu_ms_per_message is not None:
            cpu += f" (+{figures.db_cpu_ms_per_message:.1f} PostgreSQL)"
        say(
            f"| {figures.label} | {figures.rate:,.0f} | {figures.p50:.1f} | {figures.p99:.1f} "
            f"| {cpu} | {lock} | {figures.ratio:.3f} |"
        )
    for figures in results:
        say(f"ratio: {figures.ratio:.3f} ({figures.label})")
    sqlite = [f for f in results if f.label.startswith("sqlite")]
    postgres = [f for f in results if f.label.startswith("postgresql")]
    if sqlite and postgres:
        say(
            f"PostgreSQL / SQLite (best) throughput: {postgres[0].rate / max(f.rate for f in sqlite):.2f}"
        )
    return 0 if all(f.ok for f in results) else 1


def run_preload_mode(args: argparse.Namespace) -> int:
    """``--preload``: cost per message with N agents already stored."""
    levels = sorted({int(v.replace("_", "")) for v in args.preload.split(",") if v})
    say(f"machine: {machine()}")
    say(f"load average before: {_loadavg()}")
    with store(args.database_url, args.keep) as url:
        backend = "postgresql" if is_postgres(url) else url.split(":", 1)[0]
        say(f"store: {backend}; {args.messages} + {args.messages} messages per level")
        run_preload(url, levels, args.messages, say)
    say(f"load average after: {_loadavg()}")
    return 0


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
    parser.add_argument("--messages", type=int, help="messages to post (M, default 200)")
    parser.add_argument("--per-message", type=int, default=100, help="notifications per message")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (K)")
    parser.add_argument("--workers", type=int, default=1, help="passed to serve --workers")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server URL (a fresh database is created on it) or another store URL; "
        "default: a temporary SQLite file",
    )
    parser.add_argument(
        "--postgres-url",
        help="PostgreSQL server for the default run's 'postgresql, 4 workers' row "
        "(default: AGENT_PROVISION_TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--preload",
        nargs="?",
        const=",".join(str(n) for n in DEFAULT_LEVELS),
        help="cost per message with N[,N...] agents already stored (default levels "
        "1000,100000,1000000); --messages is then the messages per level (default 10)",
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
    if args.soak:
        return run_soak(args)
    if args.preload:
        args.messages = args.messages or 10
        return run_preload_mode(args)
    args.messages = args.messages or 200
    return run_default(args)


if __name__ == "__main__":
    sys.exit(main())
