"""One change the store refuses does not turn its whole message into a 500 loop (issue 12,
item 3). The fault is injected in the store itself: a trigger refuses the agent row of one
user. Before the containment, every delivery of that message answered 500 and the other
users of it were never applied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import select

from receiver.db import transaction
from receiver.models import ProcessedNotification
from tests.factories import make_notification, make_user_fields, next_id, sf_id
from tests.receiver._harness import MakeReceiver

POISON = sf_id("005", 7002)


@pytest.fixture
def poisoned(engine: Engine) -> Iterator[None]:
    """A trigger that refuses the agent row of POISON (removed afterwards)."""
    if engine.dialect.name == "postgresql":
        create = [
            f"""CREATE FUNCTION aap_poison() RETURNS trigger AS $$
                BEGIN
                  IF NEW.crm_id = '{POISON}' THEN RAISE EXCEPTION 'poisoned row'; END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql""",
            "CREATE TRIGGER aap_poison BEFORE INSERT OR UPDATE ON agent "
            "FOR EACH ROW EXECUTE FUNCTION aap_poison()",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS aap_poison ON agent",
            "DROP FUNCTION IF EXISTS aap_poison()",
        ]
    else:
        create = [
            f"CREATE TRIGGER aap_poison BEFORE INSERT ON agent WHEN NEW.crm_id = '{POISON}' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS aap_poison"]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))


def test_one_refused_change_is_logged_failed_and_the_others_are_applied(
    make_receiver: MakeReceiver, engine: Engine, poisoned: None
) -> None:
    receiver = make_receiver(raise_server_exceptions=False)
    users = [sf_id("005", 7001), POISON, sf_id("005", 7003)]
    ids = [next_id("04l") for _ in users]
    body = receiver.message(
        *(
            make_notification(user_id=u, notification_id=n, **make_user_fields())
            for u, n in zip(users, ids, strict=True)
        )
    )
    for _ in range(2):  # a redelivery is answered the same way, never a 500 loop
        answer = receiver.post(body)
        assert answer.status_code == 200, answer.text
    assert sorted(receiver.agents()) == sorted([users[0], users[2]])
    message, events = receiver.log()[0]
    assert [e.action for e in events] == ["created", "failed", "created"]
    assert "the store refused this change" in events[1].reason
    assert "poisoned row" in events[1].reason
    with transaction(engine, read_only=True) as session:
        processed = set(session.exec(select(ProcessedNotification.notification_id)).all())
    assert processed == {ids[0], ids[2]}  # the failed one stays replayable
    _, second = receiver.log()[1]
    assert [e.action for e in second] == ["duplicate", "failed", "duplicate"]


def test_a_transient_store_error_is_not_contained_and_answers_503(
    make_receiver: MakeReceiver, engine: Engine
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("a read-only SQLite file")
    from pathlib import Path

    from tests.receiver.test_sqlite_guard import _set_read_only

    receiver = make_receiver()
    path = Path(str(engine.url.database))
    _set_read_only(path, True)
    try:
        engine.dispose()  # connections from now on open read-only
        body = receiver.message(make_notification(user_id=sf_id("005", 7101), **make_user_fields()))
        answer = receiver.post(body)
        assert answer.status_code == 503, answer.text
    finally:
        _set_read_only(path, False)
    assert receiver.post(body).status_code == 200
    assert list(receiver.agents()) == [sf_id("005", 7101)]
