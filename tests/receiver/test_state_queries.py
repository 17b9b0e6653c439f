"""The state load of a message is served from the agent indexes, not a scan of the
organization (issue 11 item 1), checked with EXPLAIN on SQLite and PostgreSQL: the
statements the provisioning transaction really sends are captured and explained against
a store holding 20,000 agents: on SQLite without statistics (it never gathers any by
itself) and after ANALYZE, on PostgreSQL after ANALYZE (what autovacuum does). The
single OR query of before fails three of the four."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from receiver.agent_search import insert_agents
from receiver.db import insert_rows, transaction
from receiver.models import Organization, ProcessedNotification
from receiver.provisioning import apply_and_commit
from sf_metadata.decision import Action
from sf_metadata.mapping import username_key
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id, sf_id

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STORED = 20_000


def _preload(engine: Engine, org: str, *, analyze: bool) -> None:
    """``STORED`` agents and as many processed notification ids: both tables are large
    enough that a scan of either costs more than the index probes whether or not autovacuum
    has analyzed them meanwhile (with 100 rows, an ANALYZE that autovacuum ran during the
    test made PostgreSQL scan the 2-page processed_notification table, rightly, and the
    test fail: seen once in five suite runs)."""
    processed = [
        {
            "organization_id": org,
            "notification_id": sf_id("04l", 9_000_000_000 + n),
            "processed_at": NOW,
        }
        for n in range(STORED)
    ]
    rows = [
        {
            "id": f"{n:032x}",
            "organization_id": org,
            "crm_id": sf_id("005", n),
            "username": f"stored{n}@acme.com",
            "username_key": username_key(f"stored{n}@acme.com"),
            "system_modstamp": NOW,
            "data": {"username": f"stored{n}@acme.com"},
            "created_at": NOW,
            "updated_at": NOW,
        }
        for n in range(STORED)
    ]
    with transaction(engine) as session:
        insert_agents(session, rows)
        insert_rows(session, ProcessedNotification, processed)
    if analyze:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))


def _note(n: int, username: str) -> Notification:
    fields = make_user_fields(
        Username=username, Email=username, SystemModstamp="2026-11-21T10:00:00.000Z"
    )
    return Notification(next_id("04l"), "User", sf_id("005", n), fields)


def _explain(engine: Engine, statement: str, parameters: Any, settings: Any = ()) -> list[str]:
    """The plan of ``statement``, in a transaction that first ran ``settings`` (the
    ``SET LOCAL`` statements the applying transaction ran, so the plan is the one it got)."""
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.begin() as connection:
        for setting in settings:
            connection.exec_driver_sql(setting)
        rows = connection.exec_driver_sql(prefix + statement, parameters).all()
    return [str(row[-1]) for row in rows]


def _apply_capturing(
    engine: Engine, org: Organization, notifications: tuple[Notification, ...], tables: Any
) -> tuple[Any, list[tuple[str, Any, tuple[str, ...]]]]:
    """Apply one message of ``notifications``; the result and the SELECT statements (with
    their parameters) the transaction sent that read one of ``tables``."""
    captured: list[tuple[str, Any, tuple[str, ...]]] = []
    settings: list[str] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        lowered = statement.lower()
        if lowered.startswith("set local"):
            settings.append(statement)
        if lowered.startswith("select") and any(f"from {t}" in lowered for t in tables):
            captured.append((statement, parameters, tuple(settings)))

    message = OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=None,
        enterprise_url=None,
        partner_url=None,
        notifications=notifications,
    )
    event.listen(engine, "before_cursor_execute", capture)
    try:
        result = apply_and_commit(engine, organization=org.id, message=message, now=NOW)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return result, captured


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="big")
    return o


@pytest.mark.parametrize("analyze", [False, True], ids=["no-statistics", "analyzed"])
def test_the_agent_lookup_uses_both_indexes_not_an_organization_scan(
    engine: Engine, org: Organization, analyze: bool
) -> None:
    if not analyze and engine.dialect.name == "postgresql":
        pytest.skip(
            "PostgreSQL plans from the statistics autovacuum gathers; a table loaded a "
            "moment ago has none (SQLite never gathers any by itself: that case is real)"
        )
    _preload(engine, org.id, analyze=analyze)
    notifications = (
        _note(7, "stored7@acme.com"),  # a stored agent, updated
        _note(STORED + 1, "stored8@acme.com"),  # a new user claiming a stored username
        # new users, up to a full message
        *(_note(STORED + 2 + i, f"fresh{i}@acme.com") for i in range(98)),
    )
    result, captured = _apply_capturing(engine, org, notifications, ("agent",))
    assert [d.action for d in result.decisions] == [
        Action.UPDATED,
        Action.FAILED,
        *[Action.CREATED] * 98,
    ]
    assert captured, "the state load reads agents"
    plans = [_explain(engine, *c) for c in captured]
    shown = "\n\n".join("\n".join(plan) for plan in plans)
    if engine.dialect.name == "sqlite":
        agent_steps = [line for plan in plans for line in plan if " agent " in f" {line} "]
        assert agent_steps, shown
        assert all(line.startswith("SEARCH agent USING") for line in agent_steps), shown
        assert all("crm_id=?" in line or "username_key=?" in line for line in agent_steps), shown
        # the unique constraint's index (SQLite names it sqlite_autoindex_agent_N)
        assert any("(organization_id=? AND crm_id=?)" in line for line in agent_steps), shown
        assert any(
            "uq_agent_organization_username_key (organization_id=? AND username_key=?)" in line
            for line in agent_steps
        ), shown
    else:
        assert "Seq Scan on agent" not in shown, shown
        assert "uq_agent_organization_crm_id" in shown, shown
        assert "uq_agent_organization_username_key" in shown, shown
        conditions = [line for plan in plans for line in plan if "Index Cond" in line]
        assert conditions and all(
            "crm_id" in line or "username_key" in line for line in conditions
        ), shown


def test_postgresql_probes_the_unique_indexes_without_statistics(
    engine: Engine, org: Organization
) -> None:
    """A table without statistics (a new store, or one grown since autovacuum's last
    ANALYZE) is not scanned for the organization either: the agent, tombstone and
    processed-id reads and the organization row's read of held usernames probe their
    unique indexes once per listed id (as ``key = ANY(array)`` PostgreSQL planned a bitmap
    scan of the organization filtered by the array)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite without statistics is the case of the test above")
    with engine.begin() as connection:
        for table in ("agent", "tombstone", "processed_notification", "organization"):
            connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = off)"))
    _preload(engine, org.id, analyze=False)
    notifications = (
        _note(7, "stored7@acme.com"),
        *(_note(STORED + 2 + i, f"fresh{i}@acme.com") for i in range(99)),
    )
    tables = ("agent", "tombstone", "processed_notification", "organization")
    result, captured = _apply_capturing(engine, org, notifications, tables)
    assert [d.action for d in result.decisions] == [Action.UPDATED, *[Action.CREATED] * 99]
    plans = [_explain(engine, *c) for c in captured]
    shown = "\n\n".join("\n".join(plan) for plan in plans)
    for table in ("agent", "tombstone", "processed_notification"):
        assert f"Seq Scan on {table} " not in shown, shown
        assert f"Bitmap Heap Scan on {table} " not in shown, shown
    assert "uq_agent_organization_crm_id" in shown, shown
    assert "uq_agent_organization_username_key" in shown, shown
    assert "tombstone_pkey" in shown, shown
    assert "processed_notification_pkey" in shown, shown
