"""receiver.provisioning: the lifecycle of CONTRACT section 2 applied to the store, in one
transaction, on SQLite and PostgreSQL (reference provisioning-pitfalls.md B1-B8, B12)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, exc, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from receiver.agents import list_agents
from receiver.db import transaction
from receiver.models import (
    Agent,
    AgentSession,
    Organization,
    ProcessedNotification,
    ProvisioningEvent,
    ProvisioningMessage,
    Tombstone,
)
from receiver.provisioning import apply_and_commit, apply_message, prune_processed
from receiver.sessions import SessionHooks, StartStatus, is_session_active, start_session
from sf_metadata.decision import Action
from sf_metadata.errors import OrganizationNotFound, StoreUnavailable
from sf_metadata.mapping import AgentRecord
from sf_metadata.outbound import Notification, OutboundMessage
from sf_metadata.soap import parse_outbound_message
from tests.factories import (
    make_notification,
    make_outbound_message,
    make_user_fields,
    next_id,
    sf_id,
)

SECRET_SESSION = "00DSECRETSESSION!AQ4AQ.very-secret-session-id"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _agent(session: Session, organization_id: str, crm_id: str) -> AgentRecord:
    """The stored agent of User ``crm_id`` (18 characters)."""
    [agent] = [
        a for a in list_agents(session, organization_id=organization_id) if a.crm_id == crm_id
    ]
    return agent


def stamp(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def user(n: int) -> str:
    return sf_id("005", n)


def note(n: int, minutes: int = 0, *, nid: str | None = None, **fields: Any) -> Notification:
    """A User notification for user ``n`` stamped ``T0 + minutes``; ``fields`` override
    (``None`` omits)."""
    defaults: dict[str, Any] = {
        "SystemModstamp": stamp(minutes),
        "LastModifiedDate": stamp(minutes),
        "Username": f"agent{n}@acme.com",
        "Email": f"agent{n}@acme.com",
    }
    values = make_user_fields(**{**defaults, **fields})
    return Notification(
        notification_id=nid or next_id("04l"),
        sobject_type="User",
        record_id=user(n),
        fields=values,
    )


def message(org: Organization, *notes: Notification) -> OutboundMessage:
    return OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=sf_id("04k", 1),
        enterprise_url=None,
        partner_url=None,
        notifications=tuple(notes),
        session_id=SECRET_SESSION,
    )


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    return o


def apply(engine: Engine, org: Organization, *notes: Notification, now: datetime = T0) -> Any:
    return apply_and_commit(engine, organization=org.id, message=message(org, *notes), now=now)


def actions(result: Any) -> list[Action]:
    return [d.action for d in result.decisions]


def agent_row(engine: Engine, n: int) -> Agent | None:
    with transaction(engine, read_only=True) as session:
        return session.exec(select(Agent).where(Agent.crm_id == user(n))).first()


def tomb_row(engine: Engine, n: int) -> Tombstone | None:
    with transaction(engine, read_only=True) as session:
        return session.exec(select(Tombstone).where(Tombstone.crm_id == user(n))).first()


def agents(engine: Engine, org: Organization) -> list[dict[str, Any]]:
    with transaction(engine, read_only=True) as session:
        return [a.to_json() for a in list_agents(session, organization_id=org.id)]


# --- lifecycle --------------------------------------------------------------------------


def test_active_user_is_created_with_the_mapped_json(engine: Engine, org: Organization) -> None:
    result = apply(engine, org, note(1, Name="Jane Doe", Custom_Skill__c="French"))
    assert actions(result) == [Action.CREATED]
    assert result.counts == {Action.CREATED: 1} and result.outcome == "processed"
    (agent,) = agents(engine, org)
    assert agent["crmId"] == user(1) and agent["username"] == "agent1@acme.com"
    assert agent["name"] == "Jane Doe" and agent["disabled"] is False
    assert agent["crm"]["customFields"] == {"Custom_Skill__c": "French"}
    row = agent_row(engine, 1)
    assert row is not None and row.username_key == "agent1@acme.com"
    assert row.system_modstamp == T0 and len(row.id) == 32


def test_update_keeps_the_agent_id_and_replaces_the_data(engine: Engine, org: Organization) -> None:
    apply(engine, org, note(1, 0, Name="Jane", Custom_A__c="1"))
    before = agent_row(engine, 1)
    result = apply(
        engine,
        org,
        note(1, 5, Name="Jane Doe", Username="jane.doe@acme.com"),
        now=T0 + timedelta(minutes=5),
    )
    assert actions(result) == [Action.UPDATED]
    after = agent_row(engine, 1)
    assert before is not None and after is not None
    assert after.id == before.id and after.created_at == before.created_at
    assert after.updated_at == T0 + timedelta(minutes=5)
    assert after.data["name"] == "Jane Doe" and after.data["crm"]["customFields"] == {}
    assert after.username == "jane.doe@acme.com" and after.system_modstamp == T0 + timedelta(
        minutes=5
    )


def test_active_user_without_call_center_is_a_disabled_agent(
    engine: Engine, org: Organization
) -> None:
    apply(engine, org, note(1, CallCenterId=None))
    (agent,) = agents(engine, org)
    assert agent["disabled"] is True and agent["inboundEnabled"] is False


def test_deactivation_deletes_the_agent_keeps_a_tombstone_and_ends_sessions(
    engine: Engine, org: Organization
) -> None:
    apply(engine, org, note(1, 0), note(2, 0))
    agent = agent_row(engine, 1)
    assert agent is not None
    with transaction(engine) as session:
        s1 = start_session(session, organization_id=org.id, crm_id=user(1), now=T0)
        s2 = start_session(session, organization_id=org.id, crm_id=user(1)[:15], now=T0)
        other = start_session(session, organization_id=org.id, crm_id=user(2), now=T0)
    assert s1.status is StartStatus.STARTED and s2.status is StartStatus.STARTED

    heard: list[tuple[str, str, str, str]] = []
    hooks = SessionHooks()
    hooks.on_session_ended(lambda *args: heard.append(args))
    later = T0 + timedelta(minutes=1)
    result = apply_and_commit(
        engine,
        organization=org.id,
        message=message(org, note(1, 1, IsActive="false")),
        now=later,
        hooks=hooks,
    )
    assert actions(result) == [Action.DEPROVISIONED]
    assert agent_row(engine, 1) is None
    tomb = tomb_row(engine, 1)
    assert tomb is not None and tomb.agent_id == agent.id
    assert tomb.system_modstamp == later and tomb.deprovisioned_at == later
    assert [a["crmId"] for a in agents(engine, org)] == [user(2)]
    with transaction(engine, read_only=True) as session:
        assert not is_session_active(session, s1.session_id or "")
        assert not is_session_active(session, s2.session_id or "")
        assert is_session_active(session, other.session_id or "")
        ended = session.exec(select(AgentSession).where(AgentSession.agent_id == agent.id)).all()
        assert {(s.end_reason, s.ended_at) for s in ended} == {("deprovisioned", later)}
        assert (
            start_session(session, organization_id=org.id, crm_id=user(1), now=later).status
            is StartStatus.NOT_PROVISIONED
        )
    assert sorted(heard) == sorted(
        [
            (s1.session_id, user(1), org.id, "deprovisioned"),
            (s2.session_id, user(1), org.id, "deprovisioned"),
        ]
    )
    assert {e.session_id for e in result.ended_sessions} == {s1.session_id, s2.session_id}


def test_reactivation_restores_the_same_agent_id(engine: Engine, org: Organization) -> None:
    apply(engine, org, note(1, 0))
    original = agent_row(engine, 1)
    apply(engine, org, note(1, 1, IsActive="false"))
    result = apply(engine, org, note(1, 2, Name="Back Again"))
    assert actions(result) == [Action.RESTORED]
    restored = agent_row(engine, 1)
    assert original is not None and restored is not None
    assert restored.id == original.id and restored.data["name"] == "Back Again"
    assert tomb_row(engine, 1) is None


def test_late_older_active_message_does_not_resurrect(engine: Engine, org: Organization) -> None:
    apply(engine, org, note(1, 0))
    apply(engine, org, note(1, 10, IsActive="false"))
    result = apply(engine, org, note(1, 5, Name="Old news"))
    assert actions(result) == [Action.STALE]
    assert agent_row(engine, 1) is None
    tomb = tomb_row(engine, 1)
    assert tomb is not None and tomb.system_modstamp == T0 + timedelta(minutes=10)


def test_older_message_after_newer_is_stale_and_equal_stamp_applies(
    engine: Engine, org: Organization
) -> None:
    apply(engine, org, note(1, 10, Name="New"))
    assert actions(apply(engine, org, note(1, 5, Name="Old"))) == [Action.STALE]
    assert agent_row(engine, 1).data["name"] == "New"  # type: ignore[union-attr]
    assert actions(apply(engine, org, note(1, 10, Name="Same stamp"))) == [Action.UPDATED]
    assert agent_row(engine, 1).data["name"] == "Same stamp"  # type: ignore[union-attr]


def test_inactive_never_provisioned_user_is_ignored_but_remembered(
    engine: Engine, org: Organization
) -> None:
    result = apply(engine, org, note(1, 10, IsActive="false"))
    assert actions(result) == [Action.IGNORED]
    tomb = tomb_row(engine, 1)
    assert tomb is not None and tomb.agent_id is None
    assert tomb.system_modstamp == T0 + timedelta(minutes=10)
    # an older inactive message never lowers the stamp
    assert actions(apply(engine, org, note(1, 3, IsActive="false"))) == [Action.STALE]
    assert tomb_row(engine, 1).system_modstamp == T0 + timedelta(minutes=10)  # type: ignore[union-attr]
    # an older active one stays stale
    assert actions(apply(engine, org, note(1, 5))) == [Action.STALE]
    assert agent_row(engine, 1) is None
    # a newer active one creates the agent and clears the tombstone
    assert actions(apply(engine, org, note(1, 11))) == [Action.CREATED]
    assert agent_row(engine, 1) is not None and tomb_row(engine, 1) is None


def test_newer_inactive_message_advances_the_tombstone(engine: Engine, org: Organization) -> None:
    apply(engine, org, note(1, 1, IsActive="false"))
    apply(engine, org, note(1, 7, IsActive="false"))
    assert tomb_row(engine, 1).system_modstamp == T0 + timedelta(minutes=7)  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["false", "False", "FALSE", "0", " false "])
def test_isactive_false_is_parsed_strictly(engine: Engine, org: Organization, text: str) -> None:
    apply(engine, org, note(1, 0))
    assert actions(apply(engine, org, note(1, 1, IsActive=text))) == [Action.DEPROVISIONED]


# --- duplicates, failures, collisions ------------------------------------------------------


def test_redelivered_notification_is_applied_once(engine: Engine, org: Organization) -> None:
    nid = next_id("04l")
    apply(engine, org, note(1, 0, nid=nid, Name="First"))
    again = apply(engine, org, note(1, 9, nid=nid, Name="Replay"))
    assert actions(again) == [Action.DUPLICATE]
    assert agent_row(engine, 1).data["name"] == "First"  # type: ignore[union-attr]
    # the 15-character form of the same id is the same notification
    assert actions(apply(engine, org, note(1, 9, nid=nid[:15]))) == [Action.DUPLICATE]


def test_duplicate_inside_one_message(engine: Engine, org: Organization) -> None:
    nid = next_id("04l")
    result = apply(engine, org, note(1, 0, nid=nid), note(1, 1, nid=nid, Name="Dup"))
    assert actions(result) == [Action.CREATED, Action.DUPLICATE]
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(func.count()).select_from(ProcessedNotification)).one() == 1


def test_newest_notification_of_a_user_in_one_message_wins(
    engine: Engine, org: Organization
) -> None:
    result = apply(
        engine,
        org,
        note(1, 5, Name="Newest"),
        note(1, 1, Name="Older"),
        note(1, 5, Name="Tie, later"),
    )
    assert actions(result) == [Action.STALE, Action.STALE, Action.CREATED]
    assert agent_row(engine, 1).data["name"] == "Tie, later"  # type: ignore[union-attr]


def test_undecidable_notifications_fail_and_the_others_apply(
    engine: Engine, org: Organization
) -> None:
    no_active = note(2, IsActive=None)
    bad_id = Notification(next_id("04l"), "User", "not-an-id", make_user_fields())
    no_id = Notification(next_id("04l"), "User", None, make_user_fields())
    result = apply(engine, org, note(1), no_active, bad_id, no_id)
    assert actions(result) == [Action.CREATED, Action.FAILED, Action.FAILED, Action.FAILED]
    assert [a["crmId"] for a in agents(engine, org)] == [user(1)]
    with transaction(engine, read_only=True) as session:
        events = session.exec(
            select(ProvisioningEvent).order_by(ProvisioningEvent.position)  # type: ignore[arg-type]
        ).all()
        assert [e.action for e in events] == ["created", "failed", "failed", "failed"]
        assert "IsActive" in events[1].reason and events[1].crm_id == user(2)


def test_username_collision_fails_the_second_user(engine: Engine, org: Organization) -> None:
    apply(engine, org, note(1, 0, Username="shared@acme.com"))
    result = apply(engine, org, note(2, 0, Username="SHARED@acme.com", Email="other@acme.com"))
    assert actions(result) == [Action.FAILED]
    assert "shared@acme.com" in result.decisions[0].reason.casefold()
    assert [a["crmId"] for a in agents(engine, org)] == [user(1)]
    assert agent_row(engine, 1).username == "shared@acme.com"  # type: ignore[union-attr]


def test_deprovisioned_agent_frees_its_username(engine: Engine, org: Organization) -> None:
    apply(engine, org, note(1, 0, Username="desk@acme.com"))
    result = apply(engine, org, note(1, 1, IsActive="false"), note(2, 1, Username="desk@acme.com"))
    assert actions(result) == [Action.DEPROVISIONED, Action.CREATED]
    assert agent_row(engine, 2).username == "desk@acme.com"  # type: ignore[union-attr]


def test_rename_then_take_the_old_username_in_one_message(
    engine: Engine, org: Organization
) -> None:
    apply(engine, org, note(1, 0, Username="a@acme.com"), note(2, 0, Username="b@acme.com"))
    result = apply(
        engine, org, note(1, 1, Username="a2@acme.com"), note(2, 1, Username="a@acme.com")
    )
    assert actions(result) == [Action.UPDATED, Action.UPDATED]
    assert agent_row(engine, 2).username == "a@acme.com"  # type: ignore[union-attr]


def test_username_chain_in_reverse_document_order_applies_in_stamp_order(
    engine: Engine, org: Organization
) -> None:
    """C takes B's old name, B takes A's old name, A renames: each release is older than the
    claim it enables, but the document lists them newest first. Decided in stamp order and
    written with the changing usernames cleared first, so the unique index never trips."""
    apply(
        engine,
        org,
        *(note(n, 0, Username=f"{c}@acme.com") for n, c in ((1, "a"), (2, "b"), (3, "c"))),
    )
    result = apply(
        engine,
        org,
        note(3, 3, Username="b@acme.com"),
        note(2, 2, Username="a@acme.com"),
        note(1, 1, Username="z@acme.com"),
    )
    assert actions(result) == [Action.UPDATED] * 3
    assert [agent_row(engine, n).username for n in (1, 2, 3)] == [  # type: ignore[union-attr]
        "z@acme.com",
        "a@acme.com",
        "b@acme.com",
    ]


def test_handover_followed_by_a_stale_notification_of_the_releaser(
    engine: Engine, org: Organization
) -> None:
    """The write order follows the applied decision, not the last notification of a user."""
    apply(engine, org, note(1, 0, Username="a@acme.com"), note(2, 0, Username="b@acme.com"))
    result = apply(
        engine,
        org,
        note(1, 2, Username="z@acme.com"),
        note(2, 2, Username="a@acme.com"),
        note(1, 1, Username="old@acme.com"),
    )
    assert actions(result) == [Action.UPDATED, Action.UPDATED, Action.STALE]
    assert agent_row(engine, 1).username == "z@acme.com"  # type: ignore[union-attr]
    assert agent_row(engine, 2).username == "a@acme.com"  # type: ignore[union-attr]


def test_username_too_long_for_the_store_fails_only_that_notification(
    engine: Engine, org: Organization
) -> None:
    long_email = "a" * 300 + "@" + "b" * 60 + ".com"
    result = apply(
        engine,
        org,
        # neither Username nor Email is an address: the Username is kept, and too long
        note(1, 0, Username=long_email, Email="not an e-mail"),
        note(2, 0, Username="\u00df" * 200 + "@acme", Email="also not one"),
        note(3, 0),
    )
    assert actions(result) == [Action.FAILED, Action.FAILED, Action.CREATED]
    assert "320" in result.decisions[0].reason and "320" in result.decisions[1].reason
    assert [a["crmId"] for a in agents(engine, org)] == [user(3)]


def test_existing_agent_is_matched_by_crm_id_not_duplicated(
    engine: Engine, org: Organization
) -> None:
    apply(engine, org, note(1, 0, Username="jane@acme.com"))
    result = apply(engine, org, note(1, 1, Username="jane.doe@acme.com"))
    assert actions(result) == [Action.UPDATED]
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(func.count()).select_from(Agent)).one() == 1


def test_organizations_are_isolated(engine: Engine, make_organization: Any) -> None:
    with transaction(engine) as session:
        prod, _ = make_organization(session, name="prod")
        uat, _ = make_organization(session, name="uat")
    nid = next_id("04l")
    apply(engine, prod, note(1, 0, nid=nid, Name="Prod"))
    assert actions(apply(engine, uat, note(1, 0, nid=nid, Name="Uat"))) == [Action.CREATED]
    with transaction(engine, read_only=True) as session:
        assert _agent(session, "prod", user(1)).name == "Prod"
        assert _agent(session, "uat", user(1)).name == "Uat"


# --- message level ------------------------------------------------------------------------


def test_feature_disabled_ignores_and_writes_only_the_log(
    engine: Engine, make_organization: Any
) -> None:
    with transaction(engine) as session:
        off, _ = make_organization(session, name="off", enabled=False)
    result = apply(engine, off, note(1, 0), note(2, 0, IsActive="false"))
    assert result.outcome == "ignored" and actions(result) == [Action.IGNORED, Action.IGNORED]
    with transaction(engine, read_only=True) as session:
        for table in (Agent, Tombstone, ProcessedNotification):
            assert session.exec(select(func.count()).select_from(table)).one() == 0
        logged = session.exec(select(ProvisioningMessage)).one()
        assert logged.outcome == "ignored" and logged.notification_count == 2


def test_empty_message_is_logged_as_empty(engine: Engine, org: Organization) -> None:
    result = apply(engine, org)
    assert result.outcome == "empty" and result.decisions == ()
    with transaction(engine, read_only=True) as session:
        logged = session.exec(select(ProvisioningMessage)).one()
        assert (logged.outcome, logged.notification_count) == ("empty", 0)


def test_non_user_objects_are_ignored(engine: Engine, org: Organization) -> None:
    contact = Notification(next_id("04l"), "Contact", sf_id("003", 1), {"LastName": "X"})
    result = apply(engine, org, contact)
    assert actions(result) == [Action.IGNORED] and result.outcome == "processed"
    assert agents(engine, org) == []


def test_log_records_every_notification_and_no_session_id(
    engine: Engine, org: Organization
) -> None:
    result = apply(engine, org, note(1, 0), note(2, 0, IsActive=None))
    with transaction(engine, read_only=True) as session:
        msg = session.get(ProvisioningMessage, result.message_id)
        assert msg is not None and msg.outcome == "processed" and msg.notification_count == 2
        assert msg.action_id == sf_id("04k", 1)
    dump = _dump(engine)
    assert SECRET_SESSION not in dump and "very-secret" not in dump


def test_unknown_organization(engine: Engine, org: Organization) -> None:
    with pytest.raises(OrganizationNotFound):
        apply_and_commit(engine, organization="ghost", message=message(org, note(1)), now=T0)


def test_parsed_wire_message_applies(engine: Engine, org: Organization) -> None:
    n = make_notification(user_id=user(1)[:15], Username="wire@acme.com", IsActive="true")
    body = make_outbound_message([n], organization_id=org.salesforce_org_id, session_id="S3CR3T")
    parsed = parse_outbound_message(body)
    result = apply_and_commit(engine, organization=org.id, message=parsed, now=T0)
    assert actions(result) == [Action.CREATED]
    assert [a["crmId"] for a in agents(engine, org)] == [user(1)]
    assert "S3CR3T" not in _dump(engine)


def _dump(engine: Engine) -> str:
    with engine.connect() as conn:
        return repr(
            [
                conn.exec_driver_sql(f"SELECT * FROM {t}").all()
                for t in (
                    "organization",
                    "agent",
                    "tombstone",
                    "agent_session",
                    "processed_notification",
                    "provisioning_message",
                    "provisioning_event",
                )
            ]
        )


# --- set-based writes ---------------------------------------------------------------------


def _count_statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    yield from _count_statements(engine)


def test_statement_count_does_not_grow_with_the_message(
    engine: Engine, org: Organization, statements: list[str]
) -> None:
    apply(engine, org, note(1, 0))
    one_create = len(statements)
    statements.clear()
    apply(engine, org, *(note(n, 0) for n in range(100, 200)))
    assert len(statements) == one_create
    statements.clear()
    apply(engine, org, note(1, 1))
    one_update = len(statements)
    statements.clear()
    apply(engine, org, *(note(n, 1) for n in range(100, 200)))
    assert len(statements) == one_update
    statements.clear()
    apply(engine, org, *(note(n, 2, IsActive="false") for n in range(100, 200)))
    deprovision_many = len(statements)
    statements.clear()
    apply(engine, org, note(1, 2, IsActive="false"))
    assert len(statements) == deprovision_many
    assert len(agents(engine, org)) == 0


# --- failure in the middle, hooks after commit ----------------------------------------------


@pytest.mark.parametrize("fail_at", [1, 2, 4, 5, 6, 7, 9, 10, 11, 12])
def test_store_failure_mid_message_applies_nothing_and_retry_succeeds(
    engine: Engine, org: Organization, fail_at: int
) -> None:
    apply(engine, org, note(1, 0))
    with transaction(engine) as session:
        s = start_session(session, organization_id=org.id, crm_id=user(1), now=T0)
    msg = message(org, note(1, 1, IsActive="false"), note(2, 1), note(3, 1))
    counter = {"n": 0}

    def fail(conn, cursor, statement, params, context, executemany):
        if statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK")):
            return
        counter["n"] += 1
        if counter["n"] == fail_at:
            raise exc.OperationalError(statement, params, Exception("connection reset by peer"))

    heard: list[Any] = []
    hooks = SessionHooks()
    hooks.on_session_ended(lambda *a: heard.append(a))
    event.listen(engine, "before_cursor_execute", fail)
    try:
        with pytest.raises(StoreUnavailable, match="connection reset"):
            apply_and_commit(engine, organization=org.id, message=msg, now=T0, hooks=hooks)
    finally:
        event.remove(engine, "before_cursor_execute", fail)
    assert counter["n"] >= fail_at and heard == []
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(func.count()).select_from(ProvisioningMessage)).one() == 1
        assert session.exec(select(func.count()).select_from(ProcessedNotification)).one() == 1
        assert is_session_active(session, s.session_id or "")
    assert [a["crmId"] for a in agents(engine, org)] == [user(1)]

    result = apply_and_commit(engine, organization=org.id, message=msg, now=T0, hooks=hooks)
    assert actions(result) == [Action.DEPROVISIONED, Action.CREATED, Action.CREATED]
    assert [a["crmId"] for a in agents(engine, org)] == [user(2), user(3)]
    assert len(heard) == 1
    again = apply_and_commit(engine, organization=org.id, message=msg, now=T0)
    assert actions(again) == [Action.DUPLICATE] * 3


def test_hooks_passed_to_apply_message_fire_only_after_commit(
    engine: Engine, org: Organization
) -> None:
    apply(engine, org, note(1, 0), note(2, 0))
    with transaction(engine) as session:
        start_session(session, organization_id=org.id, crm_id=user(1), now=T0)
        start_session(session, organization_id=org.id, crm_id=user(2), now=T0)
    heard: list[Any] = []
    hooks = SessionHooks()
    hooks.on_session_ended(lambda *a: heard.append(a))

    with pytest.raises(RuntimeError), transaction(engine) as session:
        apply_message(
            session,
            organization=org.id,
            message=message(org, note(1, 1, IsActive="false")),
            now=T0,
            hooks=hooks,
        )
        raise RuntimeError("caller failed after apply")
    assert heard == [] and agent_row(engine, 1) is not None

    with transaction(engine) as session:
        apply_message(
            session,
            organization=org.id,
            message=message(org, note(2, 1, IsActive="false")),
            now=T0,
            hooks=hooks,
        )
        assert heard == []
    assert [h[1] for h in heard] == [user(2)]


def test_a_failing_hook_is_logged_and_does_not_break_the_caller(
    engine: Engine, org: Organization, caplog: pytest.LogCaptureFixture
) -> None:
    apply(engine, org, note(1, 0))
    with transaction(engine) as session:
        start_session(session, organization_id=org.id, crm_id=user(1), now=T0)
    heard: list[Any] = []
    hooks = SessionHooks()

    @hooks.on_session_ended
    def broken(*_: Any) -> None:
        raise ValueError("host app bug")

    hooks.on_session_ended(lambda *a: heard.append(a))
    result = apply_and_commit(
        engine,
        organization=org.id,
        message=message(org, note(1, 1, IsActive="false")),
        now=T0,
        hooks=hooks,
    )
    assert actions(result) == [Action.DEPROVISIONED] and len(heard) == 1
    assert "host app bug" in caplog.text and "broken" in caplog.text


# --- concurrency ----------------------------------------------------------------------------


def _run_threads(targets: list[Any]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(fn: Any) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_concurrent_deliveries_for_one_user_lose_no_update(
    engine: Engine, org: Organization
) -> None:
    minutes = list(range(12))
    random.Random(7).shuffle(minutes)
    notes = [note(1, m, Name=f"Version {m}") for m in minutes]
    errors = _run_threads([lambda n=n: apply(engine, org, n) for n in notes])
    assert errors == []
    with transaction(engine, read_only=True) as session:
        rows = session.exec(select(Agent)).all()
        assert len(rows) == 1
        assert rows[0].data["name"] == "Version 11"
        assert rows[0].system_modstamp == T0 + timedelta(minutes=11)
        actions_logged = session.exec(select(ProvisioningEvent.action)).all()
        assert len(actions_logged) == 12 and actions_logged.count("created") == 1
        assert session.exec(select(func.count()).select_from(ProcessedNotification)).one() == 12


def test_concurrent_redeliveries_of_one_notification_apply_once(
    engine: Engine, org: Organization
) -> None:
    n = note(1, 0)
    errors = _run_threads([lambda: apply(engine, org, n) for _ in range(8)])
    assert errors == []
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(func.count()).select_from(Agent)).one() == 1
        logged = sorted(session.exec(select(ProvisioningEvent.action)).all())
        assert logged == ["created"] + ["duplicate"] * 7


def test_concurrent_new_users_all_created(engine: Engine, org: Organization) -> None:
    errors = _run_threads([lambda i=i: apply(engine, org, note(i, 0)) for i in range(1, 11)])
    assert errors == []
    assert [a["crmId"] for a in agents(engine, org)] == sorted(user(i) for i in range(1, 11))


# --- retention ------------------------------------------------------------------------------


def test_prune_processed_forgets_only_old_ids(engine: Engine, org: Organization) -> None:
    old, new = next_id("04l"), next_id("04l")
    apply(engine, org, note(1, 0, nid=old), now=T0)
    apply(engine, org, note(2, 0, nid=new), now=T0 + timedelta(days=8))
    with transaction(engine) as session:
        assert prune_processed(session, older_than=T0 + timedelta(days=7)) == 1
    with transaction(engine, read_only=True) as session:
        left = session.exec(select(ProcessedNotification.notification_id)).all()
    assert left == [new]
    # a redelivery after pruning is still guarded by the stamp: nothing regresses
    assert actions(apply(engine, org, note(1, 0, nid=old))) == [Action.UPDATED]
    assert [a["crmId"] for a in agents(engine, org)] == [user(1), user(2)]


def test_changes_read_before_the_transaction_are_used(engine: Engine, org: Organization) -> None:
    from sf_metadata.decision import read_user_changes

    notes = (note(1, 0, Username="pre@acme.com"), note(2, 0, IsActive="maybe"))
    changes = read_user_changes(notes)
    with transaction(engine) as session:
        result = apply_message(
            session, organization=org.id, message=message(org, *notes), now=T0, changes=changes
        )
    assert actions(result) == [Action.CREATED, Action.FAILED]
    assert agent_row(engine, 1).username == "pre@acme.com"  # type: ignore[union-attr]
