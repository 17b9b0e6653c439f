"""PostgreSQL: the Users search's GIN trigram indexes take inserts through a small pending
list (migration 0015_search_index_pending_list), and an agent whose entries are still in
that list is found through the index like any other."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.db import insert_rows, transaction
from receiver.models import Agent
from tests.conftest import MakeOrganization

_INDEXES = ("ix_agent_search_name_trgm", "ix_agent_search_username_trgm")


def _postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's search index is FTS5 (migration 0010): no GIN options")


def test_the_trigram_indexes_take_inserts_through_a_256_kb_pending_list(engine: Engine) -> None:
    _postgres_only(engine)
    with engine.connect() as conn:
        options: dict[str, list[str]] = dict(
            conn.execute(
                sa.text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)"),
                {"names": list(_INDEXES)},
            ).all()
        )
    assert set(options) == set(_INDEXES)
    for name in _INDEXES:
        assert sorted(options[name]) == ["fastupdate=on", "gin_pending_list_limit=256"], name


def test_an_agent_in_the_pending_list_is_found_through_the_index(
    engine: Engine, make_organization: MakeOrganization, now: datetime
) -> None:
    _postgres_only(engine)
    with transaction(engine) as session:
        org, _ = make_organization(session)
        insert_rows(
            session,
            Agent,
            [
                {
                    "id": f"agent{n:027d}",
                    "organization_id": org.id,
                    "crm_id": f"005000000000{n:03d}AAA",
                    "username": f"user{n}@acme.example",
                    "username_key": f"user{n}@acme.example",
                    "data": {"name": "Grace Hopper" if n == 7 else f"Agent {n}"},
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(20)
            ],
        )
    with transaction(engine) as session:
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        session.execute(sa.text("SET LOCAL enable_indexscan = off"))
        query = (
            "SELECT crm_id FROM agent WHERE coalesce(lower(data ->> 'name'), '') LIKE '%hopper%'"
        )
        plan = "\n".join(session.execute(sa.text("EXPLAIN " + query)).scalars())
        assert "ix_agent_search_name_trgm" in plan
        found = session.execute(sa.text(query)).scalars().all()
    assert found == ["005000000000007AAA"]
