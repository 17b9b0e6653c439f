"""``--preload``: the cost of one message as the store grows (issue 11 item 1).

For each level (default 1,000, 100,000 and 1,000,000 agents already stored in the
organization), the store is filled up to that level with SQLAlchemy Core ``executemany``
(20,000 rows a transaction, random uuid4 agent ids as older stores hold, realistic agent
JSON), then, in this process and without HTTP, the receiver's own path runs for
``messages`` messages of 100 creates of new users and ``messages`` messages of 100
updates of stored users: parse (``sf_metadata.soap``), ``read_user_changes``, one
``receiver.db.transaction`` with ``receiver.provisioning.apply_message``, commit.
Prints the median and p90 milliseconds per message for each, and the ratio of each level
to the first.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import text

from bench._messages import BENCH_ORG_ID, UserChange, render_message, sf_id, user_fields
from receiver.agent_search import insert_agents
from receiver.db import make_engine, migrate, transaction
from receiver.organizations import add_organization, set_enabled
from receiver.provisioning import apply_message
from sf_metadata.decision import read_user_changes
from sf_metadata.mapping import map_user, username_key
from sf_metadata.soap import parse_outbound_message

__all__ = ["DEFAULT_LEVELS", "run_preload"]

DEFAULT_LEVELS = (1_000, 100_000, 1_000_000)
_ORG = "preload"
_RUN = "pre"
_EPOCH = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
_CHUNK = 20_000
#: Users created by the measured messages are numbered from here (never preloaded).
_NEW_BASE = 50_000_000


def _agent_rows(start: int, stop: int, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for n in range(start, stop):
        change = UserChange(sf_id("04l", n), n, 1, True, _EPOCH, run=_RUN)
        record = map_user(change.user_id, user_fields(change))
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "organization_id": _ORG,
                "crm_id": change.user_id,
                "username": record.username,
                "username_key": username_key(record.username),
                "system_modstamp": _EPOCH,
                "data": record.to_json(),
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def _fill(engine: object, start: int, stop: int, say: Callable[[str], None]) -> None:
    began = time.perf_counter()
    now = datetime.now(UTC)
    for low in range(start, stop, _CHUNK):
        rows = _agent_rows(low, min(stop, low + _CHUNK), now)
        with transaction(engine) as session:  # type: ignore[arg-type]
            insert_agents(session, rows)
    if engine.dialect.name == "postgresql":  # type: ignore[attr-defined]
        with engine.begin() as connection:  # type: ignore[attr-defined]
            connection.execute(text("ANALYZE agent"))
    say(f"  preloaded {stop - start:,} agents in {time.perf_counter() - began:.1f} s")


def _messages(users: Sequence[int], version: int, offset: int) -> list[bytes]:
    stamp = _EPOCH + timedelta(days=version)
    out = []
    for m in range(0, len(users), 100):
        batch = [
            UserChange(
                sf_id("04l", offset + m + i),
                user,
                version,
                True,
                stamp + timedelta(milliseconds=i),
                run=_RUN,
            )
            for i, user in enumerate(users[m : m + 100])
        ]
        out.append(render_message(batch))
    return out


def _apply_all(engine: object, bodies: Sequence[bytes]) -> list[float]:
    costs = []
    for body in bodies:
        began = time.perf_counter()
        message = parse_outbound_message(body)
        changes = read_user_changes(message.notifications)
        with transaction(engine) as session:  # type: ignore[arg-type]
            apply_message(
                session,
                organization=_ORG,
                message=message,
                now=datetime.now(UTC),
                changes=changes,
            )
        costs.append((time.perf_counter() - began) * 1000)
    return costs


def run_preload(
    url: str, levels: Sequence[int], messages: int, say: Callable[[str], None]
) -> list[tuple[int, float, float]]:
    """Fill and measure ``url`` level by level; return (level, create ms, update ms)
    medians. ``levels`` must increase."""
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    with transaction(engine) as session:
        add_organization(
            session,
            name=_ORG,
            salesforce_org_id=BENCH_ORG_ID,
            base_url="http://127.0.0.1:8000",
            key=Fernet.generate_key(),
            now=now,
        )
        set_enabled(session, name=_ORG, enabled=True, now=now)
    results: list[tuple[int, float, float]] = []
    preloaded = created = 0
    for round_, level in enumerate(levels):
        say(f"level {level:,} agents stored:")
        target = max(preloaded, level - created)
        _fill(engine, preloaded, target, say)
        preloaded = target
        count = messages * 100
        new_users = list(range(_NEW_BASE + created, _NEW_BASE + created + count))
        # updates of stored users spread over the whole store (not only the newest pages)
        step = max(1, preloaded // count)
        old_users = [(i * step) % preloaded for i in range(count)]
        creates = _apply_all(engine, _messages(new_users, 1, 10_000_000 + created))
        updates = _apply_all(engine, _messages(old_users, 2 + round_, 20_000_000 + created))
        created += count
        c50, u50 = statistics.median(creates), statistics.median(updates)
        c90 = sorted(creates)[int(len(creates) * 0.9)]
        u90 = sorted(updates)[int(len(updates) * 0.9)]
        say(
            f"  per 100-notification message: create {c50:.1f} ms (p90 {c90:.1f}), "
            f"update {u50:.1f} ms (p90 {u90:.1f})"
        )
        results.append((level, c50, u50))
    engine.dispose()
    first = results[0]
    for level, c50, u50 in results:
        say(
            f"ratio to {first[0]:,}: {level:,} agents: create x{c50 / first[1]:.2f}, "
            f"update x{u50 / first[2]:.2f}"
        )
    sys.stdout.flush()
    return results
