"""Reconcile against the store on SQLite and PostgreSQL (``receiver.reconcile``): a user
changed between plan and apply, a burst of Outbound Messages during a run (the newest
change wins), deprovisioning ends sessions, the provisioning log, tombstones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import select

from receiver.db import transaction
from receiver.models import AgentSession, ProvisioningMessage, Tombstone
from receiver.reconcile.run import apply_plan, reconcile
from receiver.sessions import start_session
from tests.factories import make_notification, sf_id
from tests.fake_salesforce import FakeSalesforce
from tests.receiver._harness import Receiver, assert_ack
from tests.user_records import make_user_record

READ_STAMP = "2026-11-20T10:00:00.000Z"
NEWER = "2026-11-21T10:00:00.000Z"
OLDER = "2026-11-19T10:00:00.000Z"


def om(receiver: Receiver, n: int, stamp: str, **fields: Any) -> None:
    fields.setdefault("Username", f"agent{n}@acme.com")
    fields.setdefault("Email", f"agent{n}@acme.com")
    notification = make_notification(
        user_id=sf_id("005", n), SystemModstamp=stamp, LastModifiedDate=stamp, **fields
    )
    assert_ack(receiver.post(receiver.message(notification)))


def test_user_changed_between_plan_and_apply_is_decided_again(receiver: Receiver) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, [make_user_record(n) for n in (1, 2, 3)])
    planned = reconcile(receiver.engine, receiver.name, fake.reader(), dry_run=True)
    assert planned.status == "planned" and planned.counts["create"] == 3
    om(receiver, 1, NEWER, Name="Changed in Salesforce after the read")
    om(receiver, 2, OLDER, Name="An older change delivered late")
    result = apply_plan(receiver.engine, receiver.name, planned.plan_id)
    assert result.status == "applied"
    assert result.counts["unchanged"] == 1  # user 1: the stored change is newer
    assert result.counts["update"] == 1  # user 2: the read is newer than the late message
    assert result.counts["create"] == 1
    agents = receiver.agents()
    assert agents[sf_id("005", 1)].data["name"] == "Changed in Salesforce after the read"
    assert agents[sf_id("005", 2)].data["name"] == "Agent 2"
    assert agents[sf_id("005", 1)].system_modstamp == datetime(2026, 11, 21, 10, tzinfo=UTC)


class BurstDuringApply:
    """A progress sink that delivers Outbound Messages just before the apply step."""

    def __init__(self, deliver: Any) -> None:
        self.deliver = deliver

    def phase(self, name: str) -> None:
        if name == "applying":
            self.deliver()

    def total(self, users: int) -> None:
        pass

    def advance(self, users: int) -> None:
        pass


def test_burst_of_outbound_messages_during_a_run_newest_wins(receiver: Receiver) -> None:
    fake = FakeSalesforce(
        receiver.salesforce_org_id,
        [make_user_record(n) for n in range(1, 6)],
        page_size=2,
    )

    def burst() -> None:
        for n in (1, 2):
            om(receiver, n, NEWER, Name=f"Newer {n}")
        om(receiver, 3, OLDER, Name="Older 3")
        om(receiver, 4, NEWER, IsActive="false")

    result = reconcile(
        receiver.engine, receiver.name, fake.reader(), progress=BurstDuringApply(burst)
    )
    assert result.status == "applied"
    agents = receiver.agents()
    assert agents[sf_id("005", 1)].data["name"] == "Newer 1"
    assert agents[sf_id("005", 2)].data["name"] == "Newer 2"
    assert agents[sf_id("005", 3)].data["name"] == "Agent 3"
    assert sf_id("005", 4) not in agents  # deprovisioned by the newer message, not restored
    assert agents[sf_id("005", 5)].data["name"] == "Agent 5"


def test_deprovision_ends_sessions_keeps_tombstone_and_logs(receiver: Receiver) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, [make_user_record(n) for n in (1, 2)])
    reconcile(receiver.engine, receiver.name, fake.reader())
    with transaction(receiver.engine) as session:
        started = start_session(
            session,
            organization_id=receiver.name,
            crm_id=sf_id("005", 1),
            now=datetime(2026, 11, 29, tzinfo=UTC),
        )
    agent_id = receiver.agents()[sf_id("005", 1)].id
    fake.records = [make_user_record(1, IsActive=False, SystemModstamp=NEWER), make_user_record(2)]
    result = reconcile(receiver.engine, receiver.name, fake.reader())
    assert result.counts["deprovision"] == 1 and result.counts["unchanged"] == 1
    with transaction(receiver.engine) as session:
        sessions = list(session.exec(select(AgentSession)))
        tomb = session.get(Tombstone, (receiver.name, sf_id("005", 1)))
        messages = list(
            session.exec(
                select(ProvisioningMessage).where(
                    ProvisioningMessage.organization_id == receiver.name
                )
            )
        )
    assert started is not None
    assert [s.ended_at is not None for s in sessions] == [True]
    assert tomb is not None and tomb.agent_id == agent_id
    assert sorted(m.detail or "" for m in messages) == sorted(
        f"reconcile plan {p}" for p in _plan_ids(receiver)
    )
    events = receiver.log()[-1][1]
    assert [(e.crm_id, e.action) for e in events] == [(sf_id("005", 1), "deprovisioned")]
    # Active again: the same agent id comes back.
    fake.records = [make_user_record(1, SystemModstamp="2026-11-22T10:00:00.000Z")]
    result = reconcile(receiver.engine, receiver.name, fake.reader())
    assert result.counts["restore"] == 1 and result.counts["notFound"] == 1
    assert receiver.agents()[sf_id("005", 1)].id == agent_id
    assert sf_id("005", 2) in receiver.agents()  # notFound: never deprovisioned by a run


def _plan_ids(receiver: Receiver) -> list[str]:
    from receiver.reconcile.tables import ReconcilePlanRecord

    with transaction(receiver.engine) as session:
        return [
            p.id
            for p in session.exec(
                select(ReconcilePlanRecord).order_by(ReconcilePlanRecord.created_at)  # type: ignore[arg-type]
            )
        ]


def test_inactive_never_provisioned_user_leaves_a_tombstone(receiver: Receiver) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, [make_user_record(1, IsActive=False)])
    result = reconcile(receiver.engine, receiver.name, fake.reader())
    assert result.counts["unchanged"] == 1
    with transaction(receiver.engine) as session:
        tomb = session.get(Tombstone, (receiver.name, sf_id("005", 1)))
    assert tomb is not None and tomb.agent_id is None
    # A late, older "active" message stays stale.
    om(receiver, 1, OLDER)
    assert receiver.agents() == {}


def test_scheduled_incremental_run_reads_changes_since_the_watermark(
    receiver: Receiver, key: bytes
) -> None:
    from receiver.reconcile.jobs import scheduled_runs

    fake = FakeSalesforce(receiver.salesforce_org_id, [make_user_record(n) for n in (1, 2)])
    with transaction(receiver.engine) as session:
        fake.store_connection(
            session, receiver.name, key=key, now=datetime(2026, 11, 29, tzinfo=UTC)
        )
    now = datetime(2026, 11, 29, tzinfo=UTC)
    assert scheduled_runs(receiver.engine, now, lambda name: fake.reader()) == [receiver.name]
    assert "WHERE" not in fake.queries[-1]  # no watermark yet: a full read
    assert len(receiver.agents()) == 2
    fake.records = [make_user_record(2, Name="Renamed", SystemModstamp=NEWER)]
    assert scheduled_runs(receiver.engine, now, lambda name: fake.reader()) == [receiver.name]
    # since the newest stamp applied (10:00 on the 20th) minus the 15-minute overlap
    assert "WHERE SystemModstamp >= 2026-11-20T09:45:00Z" in fake.queries[-1]
    agents = receiver.agents()
    assert agents[sf_id("005", 2)].data["name"] == "Renamed"
    assert sf_id("005", 1) in agents  # not read by an incremental run: left alone


def test_a_run_of_chosen_users_names_its_job_and_who_started_it(receiver: Receiver) -> None:
    """``on_job`` hears the id of the very job that ran (a Sync now's page shows that job's
    problem: attack finding, it took the newest job, another request's under load), and
    the job and its plan record the actor."""
    import pytest

    from receiver.jobs import get_job
    from receiver.reconcile.jobs import run_in_foreground
    from receiver.reconcile.plans import get_plan
    from sf_metadata.errors import SalesforceUnreadable

    fake = FakeSalesforce(receiver.salesforce_org_id, [make_user_record(1)])
    heard: list[int] = []
    result = run_in_foreground(
        receiver.engine,
        receiver.name,
        lambda name: fake.reader(),
        full=False,
        user_ids=[sf_id("005", 1)],
        actor="operator:ops",
        on_job=heard.append,
    )

    def unreadable(name: str) -> Any:
        raise SalesforceUnreadable("cannot reach Salesforce")

    with pytest.raises(SalesforceUnreadable):
        run_in_foreground(
            receiver.engine,
            receiver.name,
            unreadable,
            user_ids=[sf_id("005", 1)],
            on_job=heard.append,
        )
    assert len(heard) == 2 and heard[0] != heard[1]
    with transaction(receiver.engine, read_only=True) as session:
        done, failed = (get_job(session, job_id) for job_id in heard)
        assert done is not None and done.started_by == "operator:ops"
        assert failed is not None and failed.problems == ("cannot reach Salesforce",)
        assert get_plan(session, receiver.name, result.plan_id).record.created_by == (
            "operator:ops"
        )


def _parked_rows(receiver: Receiver) -> list[Any]:
    from receiver.provisioning_tables import ParkedChangeRow

    with transaction(receiver.engine, read_only=True) as session:
        return list(session.exec(select(ParkedChangeRow).order_by(ParkedChangeRow.id)))  # type: ignore[arg-type]


def test_parked_changes_are_in_reconciles_state_as_in_the_webhooks(receiver: Receiver) -> None:
    """A change parked on a username collision (CONTRACT section 2) is seen by reconcile's
    decision exactly as by the webhook's (same state, same pure code): a newer read of
    that user that applies forgets it, so the holder's later release wakes nothing."""
    from receiver.provisioning import StateKeys, load_stored_state
    from receiver.reconcile.state import load_reconcile_state
    from sf_metadata.reconcile import plan_users, read_user

    shared = {"Username": "shared@acme.com", "Email": "shared@acme.com"}
    om(receiver, 1, OLDER, **shared)
    om(receiver, 2, OLDER, **shared)  # collides with user 1: failed and parked
    [parked] = _parked_rows(receiver)
    assert parked.crm_id == sf_id("005", 2)
    # In Salesforce user 2 was renamed since; user 1 still holds the shared username.
    records = [
        make_user_record(1, SystemModstamp=OLDER, LastModifiedDate=OLDER, **shared),
        make_user_record(2, SystemModstamp=READ_STAMP, LastModifiedDate=READ_STAMP),
    ]
    read = [read_user(r) for r in records]
    with transaction(receiver.engine, read_only=True) as session:
        ours = load_reconcile_state(session, receiver.name, read, full=True)
        hooks = load_stored_state(
            session,
            organization_id=receiver.name,
            keys=StateKeys(crm_ids={sf_id("005", 1), sf_id("005", 2)}),
        )
    assert ours.stored.parked == hooks.parked
    assert [p.id for p in ours.stored.parked[sf_id("005", 2)]] == [parked.id]
    plan = plan_users(read, ours)
    row = plan.rows[1]
    assert row.action.value == "create" and row.writes
    assert row.decision is not None and row.decision.unpark == (parked.id,)

    fake = FakeSalesforce(receiver.salesforce_org_id, records)
    result = reconcile(receiver.engine, receiver.name, fake.reader())
    assert result.status == "applied" and result.counts["create"] == 1
    assert _parked_rows(receiver) == []  # forgotten in the same transaction
    om(receiver, 1, NEWER, IsActive="false", **shared)  # releases the username
    assert receiver.actions() == ["deprovisioned"]  # nothing woke
    assert receiver.usernames()[sf_id("005", 2)] == "agent2@acme.com"


def test_a_run_pauses_the_collector_and_enables_it_again(receiver: Receiver) -> None:
    import gc

    from receiver.reconcile.run import gc_paused

    seen: list[bool] = []

    class Sink(BurstDuringApply):
        def phase(self, name: str) -> None:
            seen.append(gc.isenabled())

    assert gc.isenabled()
    fake = FakeSalesforce(receiver.salesforce_org_id, [make_user_record(1)])
    reconcile(receiver.engine, receiver.name, fake.reader(), progress=Sink(lambda: None))
    assert seen and not any(seen)  # paused while reading and planning
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # nested: the last one out enables it
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()


def test_a_user_who_collides_on_every_run_keeps_one_parked_change(receiver: Receiver) -> None:
    """User 2 claims the username user 1 holds: the first run fails it and parks its
    change; runs that read it colliding the same way keep that one parked row and write
    nothing for it; a newer read, still colliding, replaces it, and the holder's release
    wakes that newest change."""
    shared = {"Username": "shared@acme.com", "Email": "shared@acme.com"}
    holder = make_user_record(1, SystemModstamp=OLDER, LastModifiedDate=OLDER, **shared)
    claimant = make_user_record(2, SystemModstamp=READ_STAMP, LastModifiedDate=READ_STAMP, **shared)
    fake = FakeSalesforce(receiver.salesforce_org_id, [holder, claimant])
    first = reconcile(receiver.engine, receiver.name, fake.reader())
    assert first.counts["create"] == 1 and first.counts["failed"] == 1
    [parked] = _parked_rows(receiver)
    assert parked.crm_id == sf_id("005", 2)
    messages = len(receiver.log())
    for _ in range(2):
        again = reconcile(receiver.engine, receiver.name, fake.reader())
        assert again.counts["failed"] == 1 and again.counts["unchanged"] == 1
        assert [p.id for p in _parked_rows(receiver)] == [parked.id]
    assert len(receiver.log()) == messages  # nothing written for the user who still collides

    renamed = make_user_record(
        2, SystemModstamp=NEWER, LastModifiedDate=NEWER, Name="Renamed", **shared
    )
    fake.records = [holder, renamed]
    assert reconcile(receiver.engine, receiver.name, fake.reader()).counts["failed"] == 1
    [newest] = _parked_rows(receiver)
    assert newest.system_modstamp == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert newest.data["name"] == "Renamed"

    om(receiver, 1, "2026-11-22T10:00:00.000Z", IsActive="false", **shared)  # releases it
    assert receiver.usernames()[sf_id("005", 2)] == "shared@acme.com"
    assert receiver.agents()[sf_id("005", 2)].data["name"] == "Renamed"
    assert _parked_rows(receiver) == []


class _Phases:
    """A progress sink keeping every phase it is told."""

    def __init__(self) -> None:
        self.phases: list[str] = []

    def phase(self, name: str) -> None:
        self.phases.append(name)

    def total(self, users: int) -> None:
        pass

    def advance(self, users: int) -> None:
        pass


def test_a_run_that_waits_for_salesforce_says_why_then_reads_on(receiver: Receiver) -> None:
    """Salesforce answers 503 twice: the run's progress says what failed and which attempt
    comes when, then goes back to reading, and the run is applied."""
    fake = FakeSalesforce(receiver.salesforce_org_id, [make_user_record(n) for n in (1, 2)])
    reader = fake.reader()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        fake.unavailable = len(waits) < 2  # up again after the second wait

    reader.sleep = sleep
    fake.unavailable = True
    sink = _Phases()
    result = reconcile(receiver.engine, receiver.name, reader, progress=sink)
    assert result.status == "applied" and result.counts["create"] == 2
    assert waits == [2.0, 4.0]
    said = [p for p in sink.phases if p.startswith("reading, waiting: ")]
    assert said == [
        "reading, waiting: the Organization query: Salesforce answered HTTP 503; "
        "attempt 2 of 6 in 2 s",
        "reading, waiting: the Organization query: Salesforce answered HTTP 503; "
        "attempt 3 of 6 in 4 s",
    ]
    assert "reading" in sink.phases[sink.phases.index(said[-1]) + 1 :]
