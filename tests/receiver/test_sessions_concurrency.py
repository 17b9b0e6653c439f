"""Session starts against a concurrent deprovisioning (issue 12, item 5).

Two transactions overlap, in both orders: a deprovisioning of the agent is uncommitted
while a session start runs in another thread, and a session start is uncommitted while the
deprovisioning runs in another thread. Either way no session may stay active for an agent
that no longer exists. On PostgreSQL both failed before ``start_session`` locked the
organization row and then the agent row (``FOR SHARE``): the start read the agent before the
deletion committed, or the deprovisioning's session query ran before the start committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from receiver.db import transaction
from receiver.models import Agent, AgentSession, Organization
from receiver.provisioning import apply_and_commit, apply_message
from receiver.sessions import StartStatus, start_session
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id, sf_id

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
LATER = "2026-11-21T10:00:00.000Z"
USER = sf_id("005", 1)


def _message(org: Organization, **fields: Any) -> OutboundMessage:
    values = make_user_fields(Username="s1@acme.com", **fields)
    return OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=None,
        enterprise_url=None,
        partner_url=None,
        notifications=(Notification(next_id("04l"), "User", USER, values),),
    )


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    apply_and_commit(engine, organization=o.id, message=_message(o), now=T0)
    return o


def _orphans(engine: Engine) -> list[str]:
    """Active sessions whose agent does not exist (or is disabled)."""
    with transaction(engine, read_only=True) as session:
        active = session.exec(
            select(AgentSession.id, AgentSession.agent_id).where(
                col(AgentSession.ended_at).is_(None)
            )
        ).all()
        live = {a.id for a in session.exec(select(Agent)).all() if not a.data.get("disabled", True)}
    return [sid for sid, agent_id in active if agent_id not in live]


def _wait_until_blocked(engine: Engine, done: threading.Event) -> None:
    """Return once the other thread finished or waits on a lock (bounded: 15 s)."""
    deadline = time.monotonic() + 15
    if engine.dialect.name != "postgresql":
        # SQLite: the other writer queues behind this open write transaction; it cannot
        # finish before the commit, so finishing within a moment is the defect.
        done.wait(timeout=0.3)
        return
    while time.monotonic() < deadline and not done.is_set():
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        done.wait(timeout=0.02)
    assert done.is_set() or time.monotonic() < deadline, "the other thread never started"


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, threading.Event, list[Any]]:
    done = threading.Event()
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as error:  # noqa: BLE001 - asserted by the test
            out.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, out


def _start(engine: Engine, org: Organization) -> Any:
    with transaction(engine) as session:
        return start_session(session, organization_id=org.id, crm_id=USER, now=T0)


@pytest.mark.parametrize("change", [{"IsActive": "false"}, {"CallCenterId": None}])
def test_a_start_during_an_uncommitted_deprovisioning_finds_the_agent_gone(
    engine: Engine, org: Organization, change: dict[str, Any]
) -> None:
    message = _message(org, SystemModstamp=LATER, **change)
    with transaction(engine) as session:
        apply_message(session, organization=org.id, message=message, now=T0)
        thread, done, out = _in_thread(lambda: _start(engine, org))
        _wait_until_blocked(engine, done)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(out) == 1 and not isinstance(out[0], BaseException), out
    assert out[0].status in (StartStatus.NOT_PROVISIONED, StartStatus.DISABLED)
    assert _orphans(engine) == []


def test_a_deprovisioning_during_an_uncommitted_start_ends_the_new_session(
    engine: Engine, org: Organization
) -> None:
    message = _message(org, SystemModstamp=LATER, IsActive="false")

    def deprovision() -> Any:
        return apply_and_commit(engine, organization=org.id, message=message, now=T0)

    with transaction(engine) as session:
        started = start_session(session, organization_id=org.id, crm_id=USER, now=T0)
        assert started.status is StartStatus.STARTED
        thread, done, out = _in_thread(deprovision)
        _wait_until_blocked(engine, done)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(out) == 1 and not isinstance(out[0], BaseException), out
    assert [s.session_id for s in out[0].ended_sessions] == [started.session_id]
    assert _orphans(engine) == []
