"""Reconcile's unchanged fast path (``receiver.reconcile.digests``) on SQLite and
PostgreSQL: a record whose digest the store vouches for is not mapped, and its plan row
is exactly the one the full decision gives; anything that changed the stored user since
(a webhook write, a tombstone, a parked change, another mapping) or a user read twice is
decided in full."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from receiver.db import transaction
from receiver.models import Agent
from receiver.reconcile import digests as digest_module
from receiver.reconcile.digests import load_digests, load_vouched
from receiver.reconcile.run import read_users, reconcile
from receiver.reconcile.state import load_reconcile_state
from sf_metadata.reconcile import KnownUser, QueriedUser, decided_users, plan_users
from tests.factories import make_notification, sf_id
from tests.fake_salesforce import FakeSalesforce
from tests.receiver._harness import Receiver, assert_ack
from tests.user_records import make_user_record

STAMP = "2026-11-20T10:00:00.000Z"
NEWER = "2026-11-21T10:00:00.000Z"


def om(receiver: Receiver, n: int, stamp: str, **fields: Any) -> None:
    fields.setdefault("Username", f"agent{n}@acme.com")
    fields.setdefault("Email", f"agent{n}@acme.com")
    fields.setdefault("Name", f"Agent {n}")
    fields.setdefault("LastName", f"Agent{n}")
    notification = make_notification(
        user_id=sf_id("005", n), SystemModstamp=stamp, LastModifiedDate=stamp, **fields
    )
    assert_ack(receiver.post(receiver.message(notification)))


def records(*ns: int, **fields: Any) -> list[dict[str, Any]]:
    return [make_user_record(n, SystemModstamp=STAMP, LastModifiedDate=STAMP, **fields) for n in ns]


def both_ways(receiver: Receiver, fake: FakeSalesforce) -> tuple[Any, Any, list[Any]]:
    """The plan of one read decided with the stored digests (the fast path) and without
    (every record mapped and decided), against the same stored state; and the users
    read the fast way."""
    with transaction(receiver.engine, read_only=True) as session:
        stored = load_digests(session, receiver.name)
    org = receiver.salesforce_org_id
    fast = read_users(fake.reader(), salesforce_org_id=org, digests=stored)
    slow = read_users(fake.reader(), salesforce_org_id=org)
    assert all(isinstance(u, QueriedUser) for u in slow.users)
    plans = []
    with transaction(receiver.engine, read_only=True) as session:
        for read in (fast, slow):
            state = load_reconcile_state(session, receiver.name, read.users, full=True)
            plans.append(plan_users(read.users, state))
    return plans[0], plans[1], fast.users


def rows(plan: Any) -> list[tuple[Any, ...]]:
    return [(r.crm_id, r.action, r.reason, r.username, r.writes) for r in plan.rows]


def updated_at(receiver: Receiver) -> dict[str, Any]:
    with transaction(receiver.engine, read_only=True) as session:
        return {a.crm_id: a.updated_at for a in session.exec(select(Agent))}


def test_an_unchanged_read_is_not_mapped_and_plans_as_the_full_decision(
    receiver: Receiver,
) -> None:
    fake = FakeSalesforce(
        receiver.salesforce_org_id,
        [*records(1, 2, 3), *records(4, IsActive=False), *records(5, CallCenterId=None)],
        page_size=2,
    )
    first = reconcile(receiver.engine, receiver.name, fake.reader())
    assert first.counts["create"] == 4 and first.counts["unchanged"] == 1
    before, log_before = updated_at(receiver), len(receiver.log())

    fast, slow, read = both_ways(receiver, fake)
    assert all(isinstance(u, KnownUser) for u in read)  # nothing mapped
    assert rows(fast) == rows(slow)
    assert fast.counts == slow.counts and fast.counts["unchanged"] == 5
    assert fast.not_found == slow.not_found
    reasons = {r.crm_id: r.reason for r in fast.rows}
    assert reasons[sf_id("005", 4)] == "user is not provisioned"  # a tombstone alone
    assert reasons[sf_id("005", 5)].endswith("disabled: no CallCenterId")

    second = reconcile(receiver.engine, receiver.name, fake.reader())
    assert second.status == "applied" and second.counts["unchanged"] == 5
    assert updated_at(receiver) == before  # an unchanged user never causes writes
    assert len(receiver.log()) == log_before


def test_a_webhook_write_since_the_last_run_is_decided_in_full(receiver: Receiver) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, records(1, 2))
    reconcile(receiver.engine, receiver.name, fake.reader())
    # Same SystemModstamp, other content (an Outbound Message with other fields): the
    # digest no longer vouches for the agent; the equal stamp applies the read again.
    om(receiver, 1, STAMP, Name="Renamed by a message")
    fast, slow, read = both_ways(receiver, fake)
    with transaction(receiver.engine, read_only=True) as session:
        known, _ = load_vouched(session, receiver.name)
    assert sorted(known) == [sf_id("005", 2)]
    assert [type(u) for u in decided_users(read, known)] == [QueriedUser, KnownUser]
    assert rows(fast) == rows(slow)
    assert fast.counts["update"] == 1 and fast.counts["unchanged"] == 1
    result = reconcile(receiver.engine, receiver.name, fake.reader())
    assert result.counts["update"] == 1
    assert receiver.agents()[sf_id("005", 1)].data["name"] == "Agent 1"
    # Applied from the read again: vouched for once more.
    assert reconcile(receiver.engine, receiver.name, fake.reader()).counts["unchanged"] == 2


class WriteBeforeApplying:
    """A progress sink that delivers an Outbound Message once the read is done (after
    the digests were loaded, before the plan's transaction)."""

    def __init__(self, deliver: Any) -> None:
        self.deliver = deliver

    def phase(self, name: str) -> None:
        if name == "planning":
            self.deliver()

    def total(self, users: int) -> None:
        pass

    def advance(self, users: int) -> None:
        pass


def test_a_change_stored_during_the_read_is_decided_in_full(receiver: Receiver) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, records(1, 2))
    reconcile(receiver.engine, receiver.name, fake.reader())
    sink = WriteBeforeApplying(lambda: om(receiver, 1, NEWER, Name="Newer in Salesforce"))
    result = reconcile(receiver.engine, receiver.name, fake.reader(), progress=sink)
    assert result.counts["unchanged"] == 2  # user 1: the stored change is newer
    assert receiver.agents()[sf_id("005", 1)].data["name"] == "Newer in Salesforce"
    with transaction(receiver.engine, read_only=True) as session:
        from receiver.reconcile.plans import get_plan

        plan = get_plan(session, receiver.name, result.plan_id)
    reason = {r.crm_id: r.reason for r in plan.rows}[sf_id("005", 1)]
    assert reason.startswith("older than the stored change")


def test_a_user_with_a_parked_change_or_read_twice_is_decided_in_full(
    receiver: Receiver,
) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, records(1, 2, 3))
    reconcile(receiver.engine, receiver.name, fake.reader())
    # User 2's newer change collides with user 1's username: parked.
    om(receiver, 2, NEWER, Username="agent1@acme.com", Email="agent1@acme.com")
    fake.records = [*records(1, 2, 3), *records(3)]
    fast, slow, read = both_ways(receiver, fake)
    assert [type(u) for u in read] == [KnownUser, KnownUser, KnownUser, KnownUser]
    assert rows(fast) == rows(slow)
    by_crm: dict[str, list[str]] = {}
    for r in fast.rows:
        by_crm.setdefault(r.crm_id, []).append(r.reason)
    assert by_crm[sf_id("005", 3)][0].startswith("repeated in the read")
    assert len(by_crm[sf_id("005", 1)]) == 1


def test_digests_of_another_mapping_vouch_for_nothing(receiver: Receiver, monkeypatch: Any) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, records(1, 2))
    reconcile(receiver.engine, receiver.name, fake.reader())
    monkeypatch.setattr("receiver.reconcile.run.SALT", b"another mapping" + bytes(17))
    fast, slow, read = both_ways(receiver, fake)
    assert all(isinstance(u, QueriedUser) for u in read)
    assert rows(fast) == rows(slow)
    assert digest_module.SALT != b"another mapping" + bytes(17)


def test_the_check_under_the_lock_gives_what_loading_every_agent_gives(
    receiver: Receiver, monkeypatch: Any
) -> None:
    """``revouch`` (from the digests loaded before a read) and ``load_vouched`` (every
    agent) agree whatever was stored in between: an agent written, a parked change, a
    deprovision (an agent gone), another plan applied. Only the last needs
    ``load_vouched`` itself."""
    from receiver.reconcile.digests import load_snapshot, revouch

    fake = FakeSalesforce(
        receiver.salesforce_org_id, [*records(1, 2, 3, 4), *records(5, IsActive=False)]
    )
    reconcile(receiver.engine, receiver.name, fake.reader())
    fell_back: list[bool] = []
    real = digest_module.load_vouched

    def spy(session: Any, organization_id: str) -> Any:
        fell_back.append(True)
        return real(session, organization_id)

    changes = [
        lambda: None,
        lambda: om(receiver, 1, NEWER, Name="Renamed by a message"),
        lambda: om(receiver, 3, NEWER, Username="agent4@acme.com", Email="agent4@acme.com"),
        lambda: om(receiver, 2, NEWER, IsActive="false"),
        lambda: reconcile(receiver.engine, receiver.name, fake.reader()),
    ]
    for n, change in enumerate(changes):
        with transaction(receiver.engine, read_only=True) as session:
            snapshot = load_snapshot(session, receiver.name)
        change()
        with transaction(receiver.engine, read_only=True) as session:
            expected = real(session, receiver.name)
            monkeypatch.setattr(digest_module, "load_vouched", spy)
            assert revouch(session, receiver.name, snapshot) == expected
            monkeypatch.setattr(digest_module, "load_vouched", real)
        assert fell_back == [True] * (n == len(changes) - 1)
        fell_back.clear()


def test_one_user_changed_among_known_pages_is_the_only_one_decided_and_written(
    receiver: Receiver,
) -> None:
    """Pages whose every record is known and a page with one changed record: exactly
    that user is mapped, decided and written, the others keep their rows and agents, and
    the watermark is the newest stamp read (the known records' own text included)."""
    fake = FakeSalesforce(
        receiver.salesforce_org_id, [*records(1, 2, 3, 4), *records(5, IsActive=False)], page_size=2
    )
    reconcile(receiver.engine, receiver.name, fake.reader())
    before = updated_at(receiver)
    changed = make_user_record(3, SystemModstamp=NEWER, LastModifiedDate=NEWER, Name="Renamed")
    fake.records = [*records(1, 2), changed, *records(4), *records(5, IsActive=False)]
    fast, slow, read = both_ways(receiver, fake)
    assert [type(u) for u in read] == [KnownUser, KnownUser, QueriedUser, KnownUser, KnownUser]
    assert rows(fast) == rows(slow)
    assert fast.counts["update"] == 1 and fast.counts["unchanged"] == 4
    with transaction(receiver.engine, read_only=True) as session:
        from receiver.reconcile.digests import load_snapshot

        snapshot = load_snapshot(session, receiver.name)
    org = receiver.salesforce_org_id
    assert read_users(fake.reader(), salesforce_org_id=org, snapshot=snapshot).watermark == (
        read_users(fake.reader(), salesforce_org_id=org).watermark
    )
    result = reconcile(receiver.engine, receiver.name, fake.reader())
    assert result.counts["update"] == 1 and result.counts["unchanged"] == 4
    after = updated_at(receiver)
    assert {crm for crm in after if after[crm] != before[crm]} == {sf_id("005", 3)}
    assert receiver.agents()[sf_id("005", 3)].data["name"] == "Renamed"
    # A known page only (the changed user is now known too): its stamp is the watermark.
    fake.records = [changed]
    with transaction(receiver.engine, read_only=True) as session:
        snapshot = load_snapshot(session, receiver.name)
    again = read_users(fake.reader(), salesforce_org_id=org, snapshot=snapshot)
    assert [type(u) for u in again.users] == [KnownUser]
    assert again.watermark is not None and again.watermark.isoformat().startswith("2026-11-21T10")
