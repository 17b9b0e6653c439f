"""receiver.provisioning.apply_decisions: the one write path of the webhook, reconcile
and replay writes exactly the decisions' effects, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from receiver.db import transaction
from receiver.models import (
    Agent,
    AgentSession,
    Organization,
    ProvisioningEvent,
    ProvisioningMessage,
)
from receiver.provisioning import (
    ApplySource,
    StateKeys,
    apply_and_commit,
    apply_decisions,
    load_stored_state,
    lock_organization,
)
from receiver.sessions import SessionHooks, start_session
from sf_metadata.decision import Action, PendingChange, decide_changes, user_change
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id, sf_id

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def user(n: int) -> str:
    return sf_id("005", n)


def fields(n: int, minutes: int, **overrides: Any) -> dict[str, Any]:
    stamp = (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return make_user_fields(**{"Username": f"d{n}@acme.com", "SystemModstamp": stamp, **overrides})


def deliver(engine: Engine, org: Organization, n: int, minutes: int, **overrides: Any) -> Any:
    msg = OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=None,
        enterprise_url=None,
        partner_url=None,
        notifications=(
            Notification(next_id("04l"), "User", user(n), fields(n, minutes, **overrides)),
        ),
    )
    return apply_and_commit(engine, organization=org.id, message=msg, now=T0)


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    return o


def reconcile(engine: Engine, org: Organization, *records: tuple[int, dict[str, Any]]) -> Any:
    """Decide queried Users with the shared core and apply them as a reconcile run."""
    pending = []
    for index, (n, values) in enumerate(records):
        change = user_change(user(n), values)
        assert change.agent is not None
        pending.append(
            PendingChange(
                index=index,
                notification_id=None,
                agent=change.agent,
                stamp=change.stamp,
                active=change.active,
            )
        )
    keys = StateKeys(
        crm_ids={p.crm_id for p in pending},
        username_keys={p.agent.username.casefold() for p in pending if p.agent.username},
    )
    with transaction(engine) as session:
        locked = lock_organization(session, org.id)
        state = load_stored_state(session, organization_id=locked.id, keys=keys)
        return apply_decisions(
            session,
            organization=locked,
            decisions=decide_changes(pending, state),
            source=ApplySource.reconcile(reference="plan-1", item_count=len(pending)),
            now=T0,
        )


def test_reconcile_decisions_write_and_log_through_the_same_path(
    engine: Engine, org: Organization
) -> None:
    deliver(engine, org, 1, 0)
    result = reconcile(engine, org, (1, fields(1, 5, Name="Renamed")), (2, fields(2, 5)))
    assert [d.action for d in result.decisions] == [Action.UPDATED, Action.CREATED]
    assert result.counts == {Action.UPDATED: 1, Action.CREATED: 1}
    with transaction(engine, read_only=True) as session:
        rows = {a.crm_id: a for a in session.exec(select(Agent)).all()}
        assert rows[user(1)].data["name"] == "Renamed"
        assert rows[user(2)].system_modstamp == T0 + timedelta(minutes=5)
        logged = session.get(ProvisioningMessage, result.message_id)
        assert logged is not None
        assert (logged.source, logged.source_ref, logged.notification_count) == (
            "reconcile",
            "plan-1",
            2,
        )
        events = session.exec(
            select(ProvisioningEvent.action).where(
                ProvisioningEvent.message_id == result.message_id
            )
        ).all()
        assert sorted(events) == ["created", "updated"]
    # a late, older Outbound Message stays stale after reconcile moved the stamp
    assert [d.action for d in deliver(engine, org, 2, 1).decisions] == [Action.STALE]


def test_webhook_messages_are_logged_as_outbound_messages(
    engine: Engine, org: Organization
) -> None:
    result = deliver(engine, org, 1, 0)
    with transaction(engine, read_only=True) as session:
        logged = session.get(ProvisioningMessage, result.message_id)
        assert logged is not None and logged.source == "outbound-message"


def test_an_agent_that_becomes_disabled_has_every_session_ended_with_the_hooks(
    engine: Engine, org: Organization
) -> None:
    deliver(engine, org, 1, 0)
    deliver(engine, org, 2, 0)
    with transaction(engine) as session:
        mine = [
            start_session(session, organization_id=org.id, crm_id=user(1), now=T0).session_id
            for _ in range(2)
        ]
        other = start_session(session, organization_id=org.id, crm_id=user(2), now=T0)
    heard: list[tuple[Any, ...]] = []
    hooks = SessionHooks()
    hooks.on_session_ended(lambda *a: heard.append(a))
    msg = OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=None,
        enterprise_url=None,
        partner_url=None,
        notifications=(
            Notification(next_id("04l"), "User", user(1), fields(1, 5, CallCenterId=None)),
        ),
    )
    result = apply_and_commit(engine, organization=org.id, message=msg, now=T0, hooks=hooks)
    assert [d.action for d in result.decisions] == [Action.UPDATED]
    assert sorted(heard) == sorted((sid, user(1), org.id, "disabled") for sid in mine)
    with transaction(engine, read_only=True) as session:
        rows = {s.id: s for s in session.exec(select(AgentSession)).all()}
        assert all(rows[sid].end_reason == "disabled" for sid in mine if sid)
        assert other.session_id is not None and rows[other.session_id].ended_at is None
        agent = session.exec(select(Agent).where(Agent.crm_id == user(1))).one()
        assert agent.data["disabled"] is True
