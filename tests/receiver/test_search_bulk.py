"""receiver._search_bulk: a batch of new agents written through the apply path leaves the
Users search exactly as the per-row triggers leave it (SQLite: the same documents, the
same FTS5 answers, an index that passes FTS5's integrity check, no pause row left
behind), on SQLite and PostgreSQL; a batch the store refuses leaves nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from receiver import _search_bulk
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
        assert conn.execute(sa.text("SELECT count(*) FROM agent_search_pause")).scalar_one() == 0
        docs = conn.execute(
            sa.text(
                "SELECT name_key, name, username FROM agent_search_doc "
                "WHERE organization_id = :org ORDER BY username"
            ),
            {"org": org.id},
        ).all()
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
                sa.text("SELECT 1 FROM sqlite_master WHERE name = 'agent_search_pause'")
            ).first()
            is not None
        )


def _assert_same_search(engine: Engine, one: Organization, other: Organization) -> None:
    """The two organizations' agents (the same names and usernames) are found alike."""
    assert _found(engine, one) == _found(engine, other)
    if _search_tables(engine):
        assert _sqlite_index(engine, one) == _sqlite_index(engine, other)


def test_a_bulk_insert_indexes_as_the_triggers_do(
    engine: Engine, make_organization: Any, now: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk, rows = _orgs(engine, make_organization)
    count = _search_bulk.BULK_ROWS + 8
    result = apply_and_commit(engine, organization=bulk.id, message=_message(bulk, count), now=now)
    assert len(result.decisions) == count
    monkeypatch.setattr(_search_bulk, "BULK_ROWS", 10**9)  # the per-row triggers
    apply_and_commit(engine, organization=rows.id, message=_message(rows, count), now=now)
    _assert_same_search(engine, bulk, rows)
    found = _found(engine, bulk)
    assert len(found["acme.com"]) == count
    assert sorted(n or "" for n, _ in found["jür"]) == sorted(
        f"JÜRGEN Groß {i}" for i in range(0, count, len(_NAMES))
    )


def test_an_outbound_message_of_100_new_users_is_indexed_in_bulk_as_the_triggers_do(
    engine: Engine, make_organization: Any, now: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook's largest message (100 notifications) takes the bulk path on SQLite
    (issue 11: the per-row triggers were about a quarter of its CPU) and is searchable
    exactly as through the triggers."""
    bulk, rows = _orgs(engine, make_organization)
    taken: list[bool] = []
    real = _search_bulk._bulk

    def spy(connection: Any, agents: list[dict[str, Any]]) -> bool:
        taken.append(real(connection, agents))
        return taken[-1]

    monkeypatch.setattr(_search_bulk, "_bulk", spy)
    apply_and_commit(engine, organization=bulk.id, message=_message(bulk, 100), now=now)
    assert taken == [_search_tables(engine)]
    monkeypatch.setattr(_search_bulk, "BULK_ROWS", 10**9)  # the per-row triggers
    apply_and_commit(engine, organization=rows.id, message=_message(rows, 100), now=now)
    _assert_same_search(engine, bulk, rows)
    assert len(_found(engine, bulk)["acme.com"]) == 100


def test_a_second_bulk_insert_indexes_only_its_own_agents(
    engine: Engine, make_organization: Any, now: Any
) -> None:
    first, second = _orgs(engine, make_organization)
    count = _search_bulk.BULK_ROWS
    apply_and_commit(engine, organization=first.id, message=_message(first, count), now=now)
    apply_and_commit(engine, organization=second.id, message=_message(second, count), now=now)
    _assert_same_search(engine, first, second)


def test_a_refused_bulk_insert_leaves_the_index_and_no_pause(
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
        for i in range(max(2, _search_bulk.BULK_ROWS))  # two rows: the second is refused
    ]
    with transaction(engine) as session:
        with pytest.raises(exc.IntegrityError), session.begin_nested():
            _search_bulk.insert_agents(session, rows)
    assert _found(engine, org) == before
    if _search_tables(engine):
        assert len(_sqlite_index(engine, org)) == 3


def test_a_reconcile_run_that_creates_many_agents_leaves_them_searchable(
    engine: Engine, make_organization: Any
) -> None:
    with transaction(engine) as session:
        org, _ = make_organization(session, name="acme")
    count = _search_bulk.BULK_ROWS + 20
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
