"""receiver.sessions: start / check / end sessions, and the session-ended hooks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from receiver.db import transaction
from receiver.models import AgentSession, Organization
from receiver.provisioning import apply_and_commit
from receiver.sessions import (
    EndedSession,
    SessionHooks,
    StartStatus,
    end_agent_sessions,
    end_session,
    is_session_active,
    start_session,
)
from sf_metadata.errors import OrganizationNotFound
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id, sf_id

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def user(n: int) -> str:
    return sf_id("005", n)


def provision(engine: Engine, org: Organization, n: int, **fields: Any) -> None:
    values = make_user_fields(Username=f"s{n}@acme.com", **fields)
    msg = OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=None,
        enterprise_url=None,
        partner_url=None,
        notifications=(Notification(next_id("04l"), "User", user(n), values),),
    )
    apply_and_commit(engine, organization=org.id, message=msg, now=T0)


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    return o


def test_start_check_and_end_a_session(engine: Engine, org: Organization) -> None:
    provision(engine, org, 1)
    with transaction(engine) as session:
        started = start_session(session, organization_id=org.id, crm_id=user(1), now=T0)
    assert started.status is StartStatus.STARTED and started.session_id
    sid = started.session_id
    assert len(sid) >= 43
    heard: list[Any] = []
    hooks = SessionHooks()
    hooks.on_session_ended(lambda *a: heard.append(a))
    with transaction(engine) as session:
        assert is_session_active(session, sid)
        assert end_session(session, session_id=sid, now=T0 + timedelta(hours=1), hooks=hooks)
        assert heard == []  # not before the commit
    assert heard == [(sid, user(1), org.id, "ended")]
    with transaction(engine) as session:
        assert not is_session_active(session, sid)
        assert not end_session(session, session_id=sid, now=T0)  # already ended
        row = session.get(AgentSession, sid)
        assert row is not None and row.ended_at == T0 + timedelta(hours=1)
        assert row.end_reason == "ended"


def test_fifteen_character_crm_id_starts_a_session(engine: Engine, org: Organization) -> None:
    provision(engine, org, 1)
    with transaction(engine) as session:
        started = start_session(session, organization_id=org.id, crm_id=user(1)[:15], now=T0)
    assert started.status is StartStatus.STARTED


@pytest.mark.parametrize("crm_id", [sf_id("005", 99), "garbage", sf_id("003", 1), ""])
def test_unprovisioned_agent_is_not_provisioned(
    engine: Engine, org: Organization, crm_id: str
) -> None:
    provision(engine, org, 1)
    with transaction(engine) as session:
        started = start_session(session, organization_id=org.id, crm_id=crm_id, now=T0)
    assert started.status is StartStatus.NOT_PROVISIONED and started.session_id is None


def test_case_changed_15_char_id_is_another_user(engine: Engine, org: Organization) -> None:
    provision(engine, org, 1)
    swapped = user(1)[:15].swapcase()
    with transaction(engine) as session:
        started = start_session(session, organization_id=org.id, crm_id=swapped, now=T0)
    assert started.status is StartStatus.NOT_PROVISIONED


def test_disabled_agent_cannot_start_a_session(engine: Engine, org: Organization) -> None:
    provision(engine, org, 1, CallCenterId=None)
    with transaction(engine) as session:
        started = start_session(session, organization_id=org.id, crm_id=user(1), now=T0)
        assert started.status is StartStatus.DISABLED and started.session_id is None
        assert session.exec(select(AgentSession)).all() == []


def test_unknown_organization(engine: Engine) -> None:
    with pytest.raises(OrganizationNotFound), transaction(engine) as session:
        start_session(session, organization_id="ghost", crm_id=user(1), now=T0)


def test_unknown_session_is_inactive_and_cannot_end(engine: Engine) -> None:
    with transaction(engine) as session:
        assert not is_session_active(session, "no-such-session")
        assert not end_session(session, session_id="no-such-session", now=T0)


def test_end_agent_sessions_ends_only_active_sessions_of_those_agents(
    engine: Engine, org: Organization
) -> None:
    provision(engine, org, 1)
    provision(engine, org, 2)
    with transaction(engine) as session:
        a1 = start_session(session, organization_id=org.id, crm_id=user(1), now=T0).session_id
        a2 = start_session(session, organization_id=org.id, crm_id=user(1), now=T0).session_id
        b1 = start_session(session, organization_id=org.id, crm_id=user(2), now=T0).session_id
        assert a1 and a2 and b1
        end_session(session, session_id=a2, now=T0)
        agent_id = session.get(AgentSession, a1).agent_id  # type: ignore[union-attr]
    later = T0 + timedelta(minutes=3)
    with transaction(engine) as session:
        ended = end_agent_sessions(
            session, agent_ids=[agent_id, "unknown"], now=later, reason="deprovisioned"
        )
        assert ended == [EndedSession(a1, user(1), org.id, "deprovisioned")]
        assert end_agent_sessions(session, agent_ids=[], now=later, reason="x") == []
    with transaction(engine) as session:
        assert not is_session_active(session, a1)
        assert session.get(AgentSession, a2).end_reason == "ended"  # type: ignore[union-attr]
        assert is_session_active(session, b1)


def test_hook_exceptions_are_logged_and_later_hooks_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = SessionHooks()
    heard: list[Any] = []

    def boom(*_: Any) -> None:
        raise RuntimeError("hook exploded")

    hooks.on_session_ended(boom)
    hooks.on_session_ended(lambda *a: heard.append(a))
    with caplog.at_level(logging.ERROR):
        hooks.fire([EndedSession("sid-secret", user(1), "acme", "ended")])
    assert heard == [("sid-secret", user(1), "acme", "ended")]
    assert "hook exploded" in caplog.text
    assert "sid-secret" not in caplog.text
