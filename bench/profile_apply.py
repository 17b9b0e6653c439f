"""Profile the receiver's hot path in one process, without HTTP (issue 4, item 2)::

    .venv/bin/python -m bench.profile_apply [--messages 50] [--database-url URL] [--profile]

For each of M messages of 100 User creates (the bench's messages): parse
(``sf_metadata.soap.parse_outbound_message``), then one transaction
(``receiver.db.transaction``) with ``receiver.provisioning.apply_message``, as
``receiver/webhook.py`` does. Prints the time split (parse / apply + commit) in
notifications per second and, with ``--profile``, a pyinstrument call tree of the run.
Store: a temporary SQLite file, or a fresh database on the PostgreSQL server of
``--database-url``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402

from bench._messages import BENCH_ORG_ID, bench_changes, render_message  # noqa: E402
from bench._pg import create_database, drop_database, is_postgres  # noqa: E402
from receiver.db import make_engine, migrate, transaction  # noqa: E402
from receiver.organizations import add_organization, set_enabled  # noqa: E402
from receiver.provisioning import apply_message  # noqa: E402
from sf_metadata.soap import parse_outbound_message  # noqa: E402

__all__ = ["main"]


def say(line: str) -> None:
    """Write one line of the report on standard output."""
    sys.stdout.write(line + "\n")


def _run(url: str, bodies: Sequence[bytes], profile: bool) -> tuple[float, float, int]:
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    with transaction(engine) as session:
        add_organization(
            session,
            name="profile",
            salesforce_org_id=BENCH_ORG_ID,
            base_url="http://127.0.0.1:8000",
            key=Fernet.generate_key(),
            now=now,
        )
        set_enabled(session, name="profile", enabled=True, now=now)
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    parse_s = apply_s = 0.0
    count = 0
    for body in bodies:
        t0 = time.perf_counter()
        message = parse_outbound_message(body)
        t1 = time.perf_counter()
        with transaction(engine) as session:
            apply_message(session, organization="profile", message=message, now=datetime.now(UTC))
        t2 = time.perf_counter()
        parse_s += t1 - t0
        apply_s += t2 - t1
        count += len(message.notifications)
    if profiler is not None:
        profiler.stop()
        say(profiler.output_text(unicode=False, color=False, show_all=False))
    engine.dispose()
    return parse_s, apply_s, count


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_apply")
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument tree")
    args = parser.parse_args(argv)
    bodies = [render_message(b) for b in bench_changes(args.messages, run="p")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url and is_postgres(args.database_url):
            url = create_database(args.database_url, prefix="profile")
        else:
            url = args.database_url or f"sqlite:///{tmp}/profile.db"
        try:
            parse_s, apply_s, count = _run(url, bodies, args.profile)
        finally:
            if args.database_url and is_postgres(args.database_url):
                drop_database(args.database_url, url)
    total = parse_s + apply_s
    say(
        f"{count} notifications in {total:.2f} s = {count / total:,.0f} notifications/s "
        "(1 process, no HTTP)"
    )
    say(
        f"parse: {parse_s:.2f} s ({parse_s / total:.0%}), "
        f"apply + commit: {apply_s:.2f} s ({apply_s / total:.0%})"
    )
    say(
        f"per message: parse {parse_s / len(bodies) * 1000:.1f} ms, "
        f"apply {apply_s / len(bodies) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
