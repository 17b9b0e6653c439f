"""receiver.replay: a failed notification is kept (never a SessionId) and decided again
through the same decision code; the result lands in the provisioning log. On SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from receiver.db import transaction
from receiver.models import Agent, Organization, ProvisioningEvent, ProvisioningMessage
from receiver.provisioning import MessageResult, apply_and_commit
from receiver.provisioning_tables import FailedNotification, ParkedChangeRow
from receiver.replay import replay_notification
from sf_metadata.decision import Action
from sf_metadata.errors import ReplayNotFound
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id, sf_id

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SECRET_SESSION = "00DSECRET!replay-session-never-kept"


def user(n: int) -> str:
    return sf_id("005", 400 + n)


def note(n: int, minutes: int, **overrides: Any) -> Notification:
    stamp = (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    values = make_user_fields(
        **{"Username": f"r{n}@acme.com", "SystemModstamp": stamp, **overrides}
    )
    return Notification(next_id("04l"), "User", user(n), values)


def deliver(engine: Engine, org: Organization, *notes: Notification) -> MessageResult:
    msg = OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=None,
        enterprise_url=None,
        partner_url=None,
        notifications=notes,
        session_id=SECRET_SESSION,
    )
    return apply_and_commit(engine, organization=org.id, message=msg, now=T0)


def event_id(engine: Engine, result: MessageResult, position: int = 0) -> int:
    with transaction(engine, read_only=True) as session:
        found = session.exec(
            select(ProvisioningEvent.id).where(
                ProvisioningEvent.message_id == result.message_id,
                ProvisioningEvent.position == position,
            )
        ).one()
    assert found is not None
    return found


def replay(engine: Engine, org: Organization, event: int) -> Any:
    with transaction(engine) as session:
        return replay_notification(
            session, organization=org.id, event_id=event, now=T0 + timedelta(hours=1)
        )


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    return o


def test_failed_notifications_are_kept_without_the_session_id(
    engine: Engine, org: Organization
) -> None:
    result = deliver(engine, org, note(1, 0), note(2, 0, IsActive=None, Custom_A__c="x"))
    assert [d.action for d in result.decisions] == [Action.CREATED, Action.FAILED]
    with transaction(engine, read_only=True) as session:
        (kept,) = session.exec(select(FailedNotification)).all()
    assert kept.event_id == event_id(engine, result, 1)
    assert (kept.record_id, kept.sobject_type) == (user(2), "User")
    assert kept.fields["Custom_A__c"] == "x" and "IsActive" not in kept.fields
    assert SECRET_SESSION not in repr(kept.model_dump())


def test_an_undecidable_notification_fails_again_with_its_reason(
    engine: Engine, org: Organization
) -> None:
    failed = deliver(engine, org, note(1, 0, IsActive=None))
    again = replay(engine, org, event_id(engine, failed))
    assert again.decision.action is Action.FAILED and "IsActive" in again.decision.reason
    with transaction(engine, read_only=True) as session:
        logged = session.get(ProvisioningMessage, again.message_id)
        assert logged is not None
        assert (logged.source, logged.source_ref) == ("replay", str(event_id(engine, failed)))
        assert logged.notification_count == 1
        # the new failure can be replayed in its turn
        assert len(session.exec(select(FailedNotification)).all()) == 2
        assert session.exec(select(Agent)).all() == []


def test_a_replay_decides_with_the_code_and_state_of_now(engine: Engine, org: Organization) -> None:
    failed = deliver(engine, org, note(1, 0, IsActive=None, Name="Fixed"))
    event = event_id(engine, failed)
    with transaction(engine) as session:  # as if a newer mapping could read it now
        kept = session.get(FailedNotification, event)
        assert kept is not None
        kept.fields = {**kept.fields, "IsActive": "true"}
        session.add(kept)
    applied = replay(engine, org, event)
    assert applied.decision.action is Action.CREATED
    with transaction(engine, read_only=True) as session:
        agent = session.exec(select(Agent).where(Agent.crm_id == user(1))).one()
        assert agent.data["name"] == "Fixed"
        actions = session.exec(
            select(ProvisioningEvent.action).where(
                ProvisioningEvent.message_id == applied.message_id
            )
        ).all()
        assert actions == ["created"]


def test_a_stale_one_stays_stale(engine: Engine, org: Organization) -> None:
    deliver(engine, org, note(1, 0, Username="v@acme.com"), note(2, 0))
    claim = deliver(engine, org, note(2, 2, Username="v@acme.com"))
    assert [d.action for d in claim.decisions] == [Action.FAILED]
    deliver(engine, org, note(2, 3, Username="newer@acme.com"))
    again = replay(engine, org, event_id(engine, claim))
    assert again.decision.action is Action.STALE and "older" in again.decision.reason
    with transaction(engine, read_only=True) as session:
        agent = session.exec(select(Agent).where(Agent.crm_id == user(2))).one()
        assert agent.username == "newer@acme.com"


def test_a_collision_that_still_collides_stays_parked_once(
    engine: Engine, org: Organization
) -> None:
    deliver(engine, org, note(1, 0, Username="v@acme.com"), note(2, 0))
    claim = deliver(engine, org, note(2, 2, Username="v@acme.com"))
    for _ in range(2):
        again = replay(engine, org, event_id(engine, claim))
        assert again.decision.action is Action.FAILED and user(1) in again.decision.reason
    with transaction(engine, read_only=True) as session:
        parked = session.exec(select(ParkedChangeRow)).all()
    assert [(p.crm_id, p.username_key) for p in parked] == [(user(2), "v@acme.com")]


def test_only_failed_events_of_the_organization_can_be_replayed(
    engine: Engine, org: Organization, make_organization: Any
) -> None:
    applied = deliver(engine, org, note(1, 0))
    failed = deliver(engine, org, note(2, 0, IsActive=None))
    with transaction(engine) as session:
        other, _ = make_organization(session, name="other")
    for organization, event in (
        (org, event_id(engine, applied)),
        (org, 999_999),
        (other, event_id(engine, failed)),
    ):
        with pytest.raises(ReplayNotFound), transaction(engine) as session:
            replay_notification(session, organization=organization.id, event_id=event, now=T0)
