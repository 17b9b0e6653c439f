"""receiver.replay_batch: the failures of a scope are replayed once each, oldest first,
bounded per call, through the one replay path. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from receiver.db import transaction
from receiver.models import Agent, Organization, ProvisioningMessage
from receiver.provisioning_tables import FailedNotification
from receiver.replay_batch import (
    BatchReplay,
    PendingFailures,
    ReplayScope,
    pending_failures,
    replay_failed,
)
from tests.receiver.test_replay import T0, deliver, event_id, note, user


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    return o


def _fix(engine: Engine, *events: int) -> None:
    """As if a fixed mapping could now read these kept notifications."""
    with transaction(engine) as session:
        for event in events:
            kept = session.get(FailedNotification, event)
            assert kept is not None
            kept.fields = {**kept.fields, "IsActive": "true"}
            session.add(kept)


def _found(engine: Engine, org: Organization, scope: ReplayScope | None = None) -> PendingFailures:
    with transaction(engine, read_only=True) as session:
        return pending_failures(session, organization_id=org.id, scope=scope or ReplayScope())


def _pending(engine: Engine, org: Organization, scope: ReplayScope | None = None) -> list[int]:
    """What a batch of ``scope`` would take."""
    scope = scope or ReplayScope()
    return _found(engine, org, scope).batch(again=scope.again)


def _replay(engine: Engine, org: Organization, **kw: Any) -> BatchReplay:
    scope = kw.pop("scope", ReplayScope())
    return replay_failed(
        engine, organization=org.id, scope=scope, now=T0 + timedelta(hours=1), **kw
    )


def test_each_failure_is_replayed_once_oldest_first(engine: Engine, org: Organization) -> None:
    first = deliver(engine, org, note(1, 0, IsActive=None), note(2, 0))
    second = deliver(engine, org, note(3, 1, IsActive=None), note(4, 1, IsActive=None))
    failures = [
        event_id(engine, first, 0),
        event_id(engine, second, 0),
        event_id(engine, second, 1),
    ]
    assert _pending(engine, org) == failures
    _fix(engine, failures[0], failures[2])
    done = _replay(engine, org)
    assert done.actions == {"created": 2, "failed": 1} and done.replayed == 3
    assert done.remaining == 0
    with transaction(engine, read_only=True) as session:
        agents = {a.crm_id for a in session.exec(select(Agent)).all()}
        sources = session.exec(
            select(ProvisioningMessage.source_ref)
            .where(ProvisioningMessage.source == "replay")
            .order_by(col(ProvisioningMessage.id))
        ).all()
    assert agents == {user(1), user(2), user(4)}
    assert sources == [str(e) for e in failures]  # oldest first
    # user 3's replay failed again: a failure of a replay, not taken without `again`
    found = _found(engine, org)
    assert found.first == [] and len(found.again) == 1 and found.again[0] not in failures
    assert _replay(engine, org).actions == {}  # pressing again with nothing fixed: nothing
    assert _replay(engine, org, scope=ReplayScope(again=True)).actions == {"failed": 1}
    assert len(_found(engine, org).again) == 1  # its newest failure, once more


def test_the_scope_and_the_limit_bound_what_runs(
    engine: Engine, org: Organization, make_organization: Any
) -> None:
    with transaction(engine) as session:
        other, _ = make_organization(session, name="other")
    deliver(engine, other, note(9, 0, IsActive=None))
    mine = deliver(engine, org, *(note(n, 0, IsActive=None) for n in range(1, 4)))
    events = [event_id(engine, mine, p) for p in range(3)]
    only_two = ReplayScope(crm_id=user(2))
    assert _pending(engine, org, only_two) == [events[1]]
    later = ReplayScope(since=T0 + timedelta(minutes=1))
    assert _pending(engine, org, later) == []
    assert _pending(engine, org, ReplayScope(source="outbound-message")) == events
    assert _pending(engine, org, ReplayScope(source="reconcile")) == []
    limited = _replay(engine, org, limit=2)
    assert (limited.replayed, limited.remaining) == (2, 1)
    assert _pending(engine, org) == [events[2]]  # the one not reached; the two new are `again`
    assert len(_pending(engine, other)) == 1  # another organization's failure is its own


def test_one_batch_at_a_time_per_organization(
    engine: Engine, org: Organization, make_organization: Any
) -> None:
    from receiver.jobs import JobKind, latest_jobs, start_job
    from sf_metadata.errors import JobBusy

    deliver(engine, org, note(1, 0, IsActive=None))
    start_job(engine, org.id, JobKind.REPLAY)  # another worker's batch holds the lease
    with pytest.raises(JobBusy):
        _replay(engine, org)
    assert len(_pending(engine, org)) == 1  # nothing was replayed
    with transaction(engine) as session:
        other, _ = make_organization(session, name="other")
    deliver(engine, other, note(2, 0, IsActive=None))
    assert _replay(engine, other).actions == {"failed": 1}  # its own lease
    with transaction(engine, read_only=True) as session:
        (job,) = latest_jobs(session, other.id, JobKind.REPLAY)
    assert job.state.value == "succeeded"
    assert job.result == {"actions": {"failed": 1}, "remaining": 0}


def test_a_failure_overtaken_by_a_later_change_is_not_pending(
    engine: Engine, org: Organization
) -> None:
    failed = deliver(engine, org, note(1, 0, IsActive=None), note(2, 0, IsActive=None))
    deliver(engine, org, note(1, 5))  # a newer change of user 1 applies
    assert _pending(engine, org) == [event_id(engine, failed, 1)]


def test_a_batch_is_refused_while_the_feature_is_off(engine: Engine, org: Organization) -> None:
    from receiver.feature_switch import set_feature
    from receiver.settings import Settings
    from sf_metadata.errors import ReplayRefused

    deliver(engine, org, note(1, 0, IsActive=None))
    set_feature(engine, settings=Settings(), organization=org.id, enabled=False, actor="test")
    with pytest.raises(ReplayRefused):
        _replay(engine, org)
    assert len(_pending(engine, org)) == 1  # nothing used up


def test_a_failure_replayed_twice_is_pending_once(engine: Engine, org: Organization) -> None:
    """A row's Replay pressed again on a failure a batch replayed already (newcomer
    finding): the notification has two failed replays, and is counted and replayed once."""
    from receiver.replay_batch import replay_one

    first = deliver(engine, org, note(1, 0, IsActive=None), note(2, 0, IsActive=None))
    eve, other = event_id(engine, first, 0), event_id(engine, first, 1)
    assert _replay(engine, org).actions == {"failed": 2}
    replay_one(engine, organization=org.id, event_id=eve, now=T0 + timedelta(hours=2))
    found = _found(engine, org)
    assert found.first == [] and len(found.again) == 2  # one per notification
    again = _replay(engine, org, scope=ReplayScope(again=True))
    assert again.actions == {"failed": 2} and again.replayed == 2
    assert len(_found(engine, org).again) == 2
    # the chain of user 1 ends in its newest failure; user 2's in its own
    with transaction(engine, read_only=True) as session:
        refs = session.exec(
            select(ProvisioningMessage.source_ref)
            .where(ProvisioningMessage.source == "replay")
            .order_by(col(ProvisioningMessage.id))
        ).all()
    assert refs[:3] == [str(eve), str(other), str(eve)]
    assert str(eve) not in refs[3:]
