"""PostgreSQL: messages of one organization serialize only when they share a user, a
username or a notification id (issue 11 item 5). Deterministic: the first transaction
holds its locks open; the others run with a short ``lock_timeout`` and either get through
(disjoint) or fail with ``LockNotAvailable`` (shared), no sleeps. On SQLite the write
transactions are serial anyway; ``lock_and_load`` there is the old organization lock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import exc, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from receiver.db import transaction
from receiver.message_locks import lock_and_load, lock_key_values
from receiver.models import Organization
from receiver.provisioning import StateKeys, apply_and_commit, lock_organization
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id, sf_id


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite write transactions are serial")
    with transaction(engine) as session:
        o, _ = make_organization(session, name="locks")
    return o


@pytest.fixture
def holder(engine: Engine, org: Organization) -> Iterator[Session]:
    """An open transaction that took the locks of user 1 / alice / notification N1."""
    session = Session(engine)
    session.begin()
    lock_and_load(session, org.id, _keys(1, "alice@acme.com", "n1"))
    yield session
    session.rollback()
    session.close()


def _keys(user: int, username: str, notification: str) -> StateKeys:
    return StateKeys(
        crm_ids={sf_id("005", user)},
        username_keys={username},
        notification_ids={sf_id("04l", hash(notification) % 10**9)},
    )


def _try(engine: Engine, org: Organization, keys: StateKeys) -> bool:
    """Whether a second transaction gets the locks of ``keys`` within 300 ms."""
    with Session(engine) as session, session.begin():
        session.execute(text("SET LOCAL lock_timeout = '300ms'"))
        try:
            lock_and_load(session, org.id, keys)
        except exc.OperationalError as error:
            assert "lock timeout" in str(error.orig) or "canceling statement" in str(error.orig)
            return False
        return True


def test_disjoint_messages_do_not_wait(engine: Engine, org: Organization, holder: Any) -> None:
    assert _try(engine, org, _keys(2, "bob@acme.com", "n2"))


@pytest.mark.parametrize(
    "keys",
    [
        _keys(1, "bob@acme.com", "n2"),  # the same Salesforce user
        _keys(2, "alice@acme.com", "n2"),  # the same username claimed
        _keys(2, "bob@acme.com", "n1"),  # the same notification id
    ],
    ids=["user", "username", "notification"],
)
def test_messages_sharing_a_key_serialize(
    engine: Engine, org: Organization, holder: Any, keys: StateKeys
) -> None:
    assert not _try(engine, org, keys)


def test_the_username_a_user_holds_now_is_locked_too(engine: Engine, org: Organization) -> None:
    # user 5 holds carol; a message renames user 5 away from carol while another claims it
    fields = make_user_fields(Username="carol@acme.com", Email="carol@acme.com")
    message = OutboundMessage(
        org.salesforce_org_id,
        None,
        None,
        None,
        (Notification(next_id("04l"), "User", sf_id("005", 5), fields),),
    )
    apply_and_commit(engine, organization=org.id, message=message, now=datetime.now(UTC))
    with Session(engine) as session, session.begin():
        lock_and_load(session, org.id, _keys(5, "dave@acme.com", "n5"))
        assert not _try(engine, org, _keys(6, "carol@acme.com", "n6"))


def test_an_organization_update_waits_for_a_message(
    engine: Engine, org: Organization, holder: Any
) -> None:
    with Session(engine) as session, session.begin():
        session.execute(text("SET LOCAL lock_timeout = '300ms'"))
        with pytest.raises(exc.OperationalError):
            lock_organization(session, org.id)


def test_lock_keys_are_sorted_distinct_and_per_organization() -> None:
    keys = lock_key_values("a", crm_ids=["x", "x"], username_keys=["x"], notification_ids=["y"])
    assert keys == sorted(keys) and len(keys) == 3
    assert lock_key_values("a", crm_ids=["x"]) != lock_key_values("b", crm_ids=["x"])
    assert all(-(2**63) <= k < 2**63 for k in keys)
