"""receiver.agent_search: a batch of new agents written through the apply path is
searchable exactly as the same agents written one message each (SQLite: the same
documents, each the view ``agent_search_source`` gives for its agent (what 0010's insert
trigger wrote), the same FTS5 answers, an index that passes FTS5's integrity check
against its content table), on SQLite and PostgreSQL; a batch the store refuses leaves
nothing behind; migration 0021 drops the insert triggers and its downgrade restores
them as they were."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from receiver.agent_search import insert_agents
from receiver.dashboard.directory import list_page
from receiver.db import transaction
from receiver.models import Organization
from receiver.provisioning import apply_and_commit
from receiver.reconcile.run import reconcile
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id
from tests.fake_salesforce import FakeSalesforce
from tests.user_records import make_user_record

_NAMES = ["JÜRGEN Groß", "Zoë O'Brien", "ada lovelace", "İlkay Şahin", "Émile Zola", "Ng"]
_QUERIES = [
    "jür",
    "groß",
    "zoë",
    "o'b",
    "LOVE",
    "ilkay",
    "ahin",
    "émile",
    "ng",
    "acme.com",
    "x",
    "renamed",
    "example.org",
]


def _message(org: Organization, count: int) -> OutboundMessage:
    notifications = []
    for i in range(count):
        name = f"{_NAMES[i % len(_NAMES)]} {i}"
        fields = make_user_fields(Name=name, Username=f"Bulk.User{i}@Acme.com")
        notifications.append(Notification(next_id("04l"), "User", next_id("005"), fields))
    return OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=None,
        enterprise_url=None,
        partner_url=None,
        notifications=tuple(notifications),
    )


def _orgs(engine: Engine, make_organization: Any) -> tuple[Organization, Organization]:
    with transaction(engine) as session:
        bulk, _ = make_organization(session, name="bulk")
        rows, _ = make_organization(session, name="rows")
    return bulk, rows


def _found(engine: Engine, org: Organization) -> dict[str, list[tuple[str | None, ...]]]:
    """Each query's page, as the Users page lists it (crm ids differ between the orgs)."""
    with transaction(engine, read_only=True) as session:
        return {
            q: [
                (r.name, r.username)
                for r in list_page(session, organization_id=org.id, query=q, page_size=500).rows
            ]
            for q in _QUERIES
        }


def _sqlite_index(engine: Engine, org: Organization) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        conn.execute(
            sa.text("INSERT INTO agent_search(agent_search, rank) VALUES ('integrity-check', 1)")
        )

        def rows(columns: str, table: str, order: str) -> list[Any]:
            return list(
                conn.execute(
                    sa.text(
                        f"SELECT {columns} FROM {table} WHERE organization_id = :org "
                        f"ORDER BY {order}"
                    ),
                    {"org": org.id},
                )
            )

        every = "agent_id, name_key, crm_id, name, username"
        # each agent's document, as the trigger of 0010 wrote it
        assert rows(every, "agent_search_doc", "agent_id") == rows(
            every, "agent_search_source", "agent_id"
        )
        docs = rows("name_key, name, username", "agent_search_doc", "username")
        agents = conn.execute(
            sa.text("SELECT count(*) FROM agent WHERE organization_id = :org"), {"org": org.id}
        ).scalar_one()
    assert len(docs) == agents
    return [tuple(d) for d in docs]


def _search_tables(engine: Engine) -> bool:
    with engine.connect() as conn:
        return (
            conn.dialect.name == "sqlite"
            and conn.execute(
                sa.text("SELECT 1 FROM sqlite_master WHERE name = 'agent_search_doc'")
            ).first()
            is not None
        )


def _assert_same_search(engine: Engine, one: Organization, other: Organization) -> None:
    """The two organizations' agents (the same names and usernames) are found alike."""
    assert _found(engine, one) == _found(engine, other)
    if _search_tables(engine):
        assert _sqlite_index(engine, one) == _sqlite_index(engine, other)


def _one_at_a_time(engine: Engine, org: Organization, count: int, now: Any) -> None:
    message = _message(org, count)
    for notification in message.notifications:
        one = replace(message, notifications=(notification,))
        apply_and_commit(engine, organization=org.id, message=one, now=now)


@pytest.mark.parametrize("count", [1, 9, 100])
def test_a_batch_is_indexed_as_its_agents_one_message_each(
    engine: Engine, make_organization: Any, now: Any, count: int
) -> None:
    """A message of one, nine or 100 new users (the webhook's largest) is searchable
    exactly as the same users sent one message each."""
    bulk, rows = _orgs(engine, make_organization)
    result = apply_and_commit(engine, organization=bulk.id, message=_message(bulk, count), now=now)
    assert len(result.decisions) == count
    _one_at_a_time(engine, rows, count, now)
    _assert_same_search(engine, bulk, rows)
    found = _found(engine, bulk)
    assert len(found["acme.com"]) == count
    assert sorted(n or "" for n, _ in found["jür"]) == sorted(
        f"JÜRGEN Groß {i}" for i in range(0, count, len(_NAMES))
    )


def _renamed(message: OutboundMessage) -> OutboundMessage:
    """The users of ``message`` again (new notification ids), each with a new name and
    username, a day later; every third keeps its name and username (an update the index
    ignores)."""
    notifications = []
    for i, n in enumerate(message.notifications):
        fields = {**n.fields, "SystemModstamp": "2026-11-21T10:00:00.000Z"}
        if i % 3 != 2:
            fields.update(Name=f"Renamed Person {i}", Username=f"Renamed.User{i}@Example.org")
        notifications.append(replace(n, notification_id=next_id("04l"), fields=fields))
    return replace(message, notifications=tuple(notifications))


@pytest.mark.parametrize("count", [1, 9, 100])
def test_an_update_batch_is_indexed_as_its_updates_one_message_each(
    engine: Engine, make_organization: Any, now: Any, count: int
) -> None:
    """Renamed users (new name and username) are found by their new values only, in a
    message of one, nine or 100 as in one message each; the index stays whole."""
    bulk, rows = _orgs(engine, make_organization)
    first = {org.id: _message(org, count) for org in (bulk, rows)}
    for org in (bulk, rows):
        apply_and_commit(engine, organization=org.id, message=first[org.id], now=now)
    renamed = _renamed(first[bulk.id])
    result = apply_and_commit(engine, organization=bulk.id, message=renamed, now=now)
    assert len(result.decisions) == count
    again = _renamed(first[rows.id])
    for notification in again.notifications:
        one = replace(again, notifications=(notification,))
        apply_and_commit(engine, organization=rows.id, message=one, now=now)
    _assert_same_search(engine, bulk, rows)
    found = _found(engine, bulk)
    kept = len(range(2, count, 3))
    assert len(found["renamed"]) == count - kept
    assert len(found["acme.com"]) == kept  # the old usernames of the renamed are gone
    assert len(found["example.org"]) == count - kept


def test_the_schema_has_no_insert_or_update_trigger_on_the_search_tables(engine: Engine) -> None:
    """Migration 0021: an insert or update of ``agent`` runs no trigger program (the
    writer indexes the batch itself); the delete triggers stay."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's search tables")
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        triggers = {name: sql for name, sql in found}
    if not _search_tables(engine):
        pytest.skip("an SQLite build without the trigram tokenizer")
    assert not [
        name for name, sql in triggers.items() if "INSERT ON" in sql.upper() or "UPDATE" in name
    ]
    assert not [name for name, sql in triggers.items() if " UPDATE " in sql.split("BEGIN")[0]]
    assert {"agent_search_agent_ad", "agent_search_doc_ad"} <= triggers.keys()


def test_a_second_bulk_insert_indexes_only_its_own_agents(
    engine: Engine, make_organization: Any, now: Any
) -> None:
    first, second = _orgs(engine, make_organization)
    count = 7
    apply_and_commit(engine, organization=first.id, message=_message(first, count), now=now)
    apply_and_commit(engine, organization=second.id, message=_message(second, count), now=now)
    _assert_same_search(engine, first, second)


def test_a_refused_batch_leaves_the_index_as_it_was(
    engine: Engine, make_organization: Any, now: Any
) -> None:
    org, _ = _orgs(engine, make_organization)
    apply_and_commit(engine, organization=org.id, message=_message(org, 3), now=now)
    before = _found(engine, org)
    rows = [
        {
            "id": f"agt_bulk_{i}",
            "organization_id": org.id,
            "crm_id": next_id("005"),
            "username": "same@acme.com",  # the unique username index refuses the second
            "username_key": "same@acme.com",
            "system_modstamp": now,
            "data": {"name": f"Refused {i}"},
            "created_at": now,
            "updated_at": now,
        }
        for i in range(2)  # two rows: the second is refused
    ]
    with transaction(engine) as session:
        with pytest.raises(exc.IntegrityError), session.begin_nested():
            insert_agents(session, rows)
    assert _found(engine, org) == before
    if _search_tables(engine):
        assert len(_sqlite_index(engine, org)) == 3


def test_a_reconcile_run_that_creates_many_agents_leaves_them_searchable(
    engine: Engine, make_organization: Any
) -> None:
    with transaction(engine) as session:
        org, _ = make_organization(session, name="acme")
    count = 21
    records = [make_user_record(n, Name=f"{_NAMES[n % len(_NAMES)]} {n}") for n in range(count)]
    fake = FakeSalesforce(org.salesforce_org_id, records, page_size=50)
    assert reconcile(engine, "acme", fake.reader()).counts["create"] == count
    found = _found(engine, org)
    assert len(found["acme.com"]) == count
    assert len(found["ahin"]) == len(range(4, count, len(_NAMES)))
    # A second run renames and deprovisions some (the update and delete triggers).
    records[0] = make_user_record(
        0, Name="Renamed Agent", SystemModstamp="2026-11-21T10:00:00.000Z"
    )
    records[1] = make_user_record(1, IsActive=False, SystemModstamp="2026-11-21T10:00:00.000Z")
    fake = FakeSalesforce(org.salesforce_org_id, records, page_size=50)
    counts = reconcile(engine, "acme", fake.reader()).counts
    assert (counts["update"], counts["deprovision"]) == (1, 1)
    found = _found(engine, org)
    assert len(found["acme.com"]) == count - 1
    assert [n for n, _ in found["renamed"]] == ["Renamed Agent"]
    if _search_tables(engine):
        assert len(_sqlite_index(engine, org)) == count - 1


def test_migration_0021_drops_the_insert_triggers_and_its_downgrade_restores_them(
    database_url: str,
) -> None:
    from alembic import command

    from receiver.db import _alembic_config, make_engine

    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's search tables")
    engine = make_engine(database_url)

    def schema() -> dict[str, str]:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT name, sql FROM sqlite_master WHERE type IN ('trigger', 'table') "
                    "AND name LIKE 'agent_search%'"
                )
            )
            return {name: sql for name, sql in found}

    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "0020_actors")
        before = schema()
        if "agent_search_pause" not in before:
            pytest.skip("an SQLite build without the trigram tokenizer")
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "0021_search_index_by_writer")
        after = schema()
        assert before.keys() - after.keys() == {
            "agent_search_agent_ai",
            "agent_search_doc_ai",
            "agent_search_agent_au",
            "agent_search_doc_au",
        }
        assert {k: v for k, v in before.items() if k in after} == after
        with engine.begin() as connection:
            command.downgrade(_alembic_config(connection), "0020_actors")
        assert schema() == before
    finally:
        engine.dispose()


def test_new_agents_on_a_store_downgraded_below_0021_are_indexed_once(
    database_url: str, make_organization: Any, now: Any
) -> None:
    """With the insert triggers back (a downgrade to 0020 while this release still
    serves), a batch closes their gate: each agent has one document and one FTS5 entry,
    and the index passes its integrity check against the documents."""
    from alembic import command

    from receiver.db import _alembic_config, make_engine, migrate

    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's search tables")
    engine = make_engine(database_url)
    try:
        migrate(engine)
        if not _search_tables(engine):
            pytest.skip("an SQLite build without the trigram tokenizer")
        with engine.begin() as connection:
            command.downgrade(_alembic_config(connection), "0020_actors")
        with transaction(engine) as session:
            batch, _ = make_organization(session, name="batch")
            single, _ = make_organization(session, name="single")
        created = _message(batch, 12)
        apply_and_commit(engine, organization=batch.id, message=created, now=now)
        _one_at_a_time(engine, single, 3, now)
        # the integrity check, and each document as the view gives it
        assert (len(_sqlite_index(engine, batch)), len(_sqlite_index(engine, single))) == (12, 3)
        with engine.connect() as conn:
            entries = conn.execute(sa.text("SELECT count(*) FROM agent_search")).scalar_one()
            paused = conn.execute(sa.text("SELECT count(*) FROM agent_search_pause")).scalar_one()
        assert (entries, paused) == (15, 0)
        assert len(_found(engine, batch)["acme.com"]) == 12
        # updates there are indexed by the update triggers alone (once)
        apply_and_commit(engine, organization=batch.id, message=_renamed(created), now=now)
        assert len(_sqlite_index(engine, batch)) == 12
        with engine.connect() as conn:
            entries = conn.execute(sa.text("SELECT count(*) FROM agent_search")).scalar_one()
        assert entries == 15
        assert len(_found(engine, batch)["renamed"]) == 8
    finally:
        engine.dispose()


def test_the_daily_check_indexes_what_a_writer_left_unindexed(
    engine: Engine, make_organization: Any, now: Any
) -> None:
    """An agent renamed, and one inserted, by a writer that does not index (a process of
    an earlier release): the daily ``search-index`` task finds both and indexes them; a
    second run finds nothing."""
    from receiver.db import insert_rows
    from receiver.maintenance import check_search_index
    from receiver.models import Agent
    from receiver.periodic import periodic_tasks
    from receiver.settings import Settings

    assert "search-index" in [task.name for task in periodic_tasks(Settings())]

    def run() -> int:
        return check_search_index(engine)

    org, _ = _orgs(engine, make_organization)
    apply_and_commit(engine, organization=org.id, message=_message(org, 5), now=now)
    if not _search_tables(engine):
        assert run() == 0  # PostgreSQL's GIN indexes follow the rows themselves
        return
    with transaction(engine) as session:
        session.execute(
            sa.text(
                "UPDATE agent SET data = json_set(data, '$.name', 'Stale Renamed') "
                "WHERE organization_id = :org AND username_key = 'bulk.user0@acme.com'"
            ),
            {"org": org.id},
        )
        row = {
            "id": "agt_unindexed_1",
            "organization_id": org.id,
            "crm_id": next_id("005"),
            "username": "unindexed@acme.com",
            "username_key": "unindexed@acme.com",
            "system_modstamp": now,
            "data": {"name": "Never Indexed"},
            "created_at": now,
            "updated_at": now,
        }
        insert_rows(session, Agent, [row])
    before = _found(engine, org)
    assert (before["renamed"], len(before["acme.com"])) == ([], 5)  # neither is indexed yet
    assert run() == 2
    assert len(_sqlite_index(engine, org)) == 6  # the documents equal the view again
    assert run() == 0
    found = _found(engine, org)
    assert [n for n, _ in found["renamed"]] == ["Stale Renamed"]
    assert len(found["acme.com"]) == 6
