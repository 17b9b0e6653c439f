"""sf_metadata.decide: every decision carries its effect (what the store writes), and the
same core decides changes from any source (a notification, a queried User, a replay)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from sf_metadata.change_effects import changed_fields
from sf_metadata.decision import (
    Action,
    Decision,
    PendingChange,
    StoredState,
    StoredUser,
    decide_changes,
    decide_parked,
    plan_message,
    user_change,
)
from sf_metadata.effects import EndReason, ParkedChange, UpsertAgent, WriteTombstone
from sf_metadata.mapping import field_label
from sf_metadata.outbound import Notification
from tests.factories import make_user_fields, next_id, sf_id

T1 = "2026-11-20T11:00:00.000Z"
T2 = "2026-11-20T12:00:00.000Z"
DT0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
DT1 = datetime(2026, 11, 20, 11, tzinfo=UTC)
DT2 = datetime(2026, 11, 20, 12, tzinfo=UTC)
ALICE = sf_id("005", 201)
BOB = sf_id("005", 202)


def fields(**overrides: Any) -> dict[str, Any]:
    fixed = {
        "Username": "alice@acme.com",
        "Email": "alice@acme.com",
        "Name": "Alice",
        "LastName": "Alice",
        "SystemModstamp": T1,
    }
    return make_user_fields(**{**fixed, **overrides})


def note(user: str = ALICE, **overrides: Any) -> Notification:
    return Notification(next_id("04l"), "User", user, fields(**overrides))


def pending(user: str = ALICE, index: int = 0, **overrides: Any) -> PendingChange:
    change = user_change(user, fields(**overrides))
    assert change.agent is not None
    return PendingChange(
        index=index,
        notification_id=None,
        agent=change.agent,
        stamp=change.stamp,
        active=change.active,
    )


def st(
    *users: StoredUser, parked: dict[str, tuple[ParkedChange, ...]] | None = None
) -> StoredState:
    owners = {u.username.casefold(): u.crm_id for u in users if u.provisioned and u.username}
    return StoredState(
        {u.crm_id: u for u in users},
        owners,
        frozenset(),
        organization_id="acme",
        parked=parked or {},
    )


def agent_json(**overrides: Any) -> dict[str, Any]:
    change = user_change(ALICE, fields(**overrides))
    assert change.agent is not None
    return change.agent.to_json()


def test_decision_is_built_with_keywords_only() -> None:
    with pytest.raises(TypeError):
        Decision(0, None, None, Action.FAILED, "x")  # type: ignore[call-arg]


def test_create_carries_an_insert_with_a_stable_new_id() -> None:
    (d,) = decide_changes([pending()], st())
    assert d.action is Action.CREATED and isinstance(d.effect, UpsertAgent)
    assert d.effect.insert and not d.effect.drop_tombstone and d.effect.data_changed
    assert len(d.effect.agent_id) == 32 and d.effect.system_modstamp == DT1
    assert d.effect.username_key == "alice@acme.com" and d.end_sessions is None
    assert decide_changes([pending()], st()) == [d]  # pure: the same decision again
    other = dataclasses.replace(st(), organization_id="other")
    (elsewhere,) = decide_changes([pending()], other)
    assert isinstance(elsewhere.effect, UpsertAgent)
    assert elsewhere.effect.agent_id != d.effect.agent_id


def test_restore_reuses_the_tombstone_agent_id_and_drops_the_tombstone() -> None:
    tomb = StoredUser(ALICE, "kept-id", False, DT0, None)
    (d,) = decide_changes([pending()], st(tomb))
    assert d.action is Action.RESTORED and isinstance(d.effect, UpsertAgent)
    assert (d.effect.agent_id, d.effect.insert, d.effect.drop_tombstone) == ("kept-id", True, True)


def test_update_keeps_the_stamp_when_the_change_has_none() -> None:
    held = StoredUser(ALICE, "a1", True, DT1, "alice@acme.com", data=agent_json(Name="Old"))
    (d,) = decide_changes(
        [pending(Name="New", SystemModstamp=None, LastModifiedDate=None)], st(held)
    )
    assert d.action is Action.UPDATED and isinstance(d.effect, UpsertAgent)
    assert (d.effect.insert, d.effect.system_modstamp, d.effect.agent_id) == (False, DT1, "a1")
    assert d.effect.released_key is None


def test_an_unchanged_agent_writes_nothing_but_a_newer_stamp_is_written() -> None:
    held = StoredUser(ALICE, "a1", True, DT1, "alice@acme.com", data=agent_json())
    (same,) = decide_changes([pending()], st(held))
    assert same.action is Action.UPDATED and same.effect is None
    (newer,) = decide_changes([pending(SystemModstamp=T2)], st(held))
    assert isinstance(newer.effect, UpsertAgent) and not newer.effect.data_changed
    assert newer.effect.system_modstamp == DT2


def test_an_update_names_the_fields_it_changed() -> None:
    held = StoredUser(ALICE, "a1", True, DT0, "alice@acme.com", data=agent_json())
    (d,) = decide_changes([pending(Name="Alice B", Email="ab@acme.com")], st(held))
    assert d.action is Action.UPDATED
    assert d.reason == "IsActive is true: agent updated (Name, Email changed)"
    (same,) = decide_changes([pending(SystemModstamp=T2)], st(held))
    assert same.reason == "IsActive is true: agent already up to date"
    unknown = dataclasses.replace(held, data=None)  # nothing stored to compare with
    (d,) = decide_changes([pending(Name="Alice B")], st(unknown))
    assert d.reason == "IsActive is true: agent updated"


def test_changed_fields_walks_objects_and_compares_lists_whole() -> None:
    old = {"name": "A", "crm": {"email": "a@x", "customFields": {"R__c": "1"}}, "tags": [1]}
    new = {"name": "A", "crm": {"email": "b@x", "customFields": {"R__c": "2", "S__c": "x"}}}
    assert changed_fields(old, new) == [
        "crm.email",
        "crm.customFields.R__c",
        "crm.customFields.S__c",
        "tags",
    ]
    many = {f"f{i}": i for i in range(9)}
    held = StoredUser(ALICE, "a1", True, DT0, "alice@acme.com", data=many)
    (d,) = decide_changes([pending()], st(held))
    changed = changed_fields(many, agent_json())  # 9 stale keys and every agent key
    named = ", ".join(map(field_label, changed[:6]))
    assert d.reason.endswith(f"{named} and {len(changed) - 6} more changed)")


def test_rename_releases_the_old_username() -> None:
    held = StoredUser(ALICE, "a1", True, DT0, "Alice@Acme.com", data=agent_json())
    (d,) = decide_changes([pending(Username="alice.new@acme.com")], st(held))
    assert isinstance(d.effect, UpsertAgent) and d.effect.released_key == "alice@acme.com"


def test_deprovision_deletes_the_agent_keeps_its_id_and_ends_sessions() -> None:
    held = StoredUser(ALICE, "a1", True, DT0, "alice@acme.com")
    (d,) = decide_changes([pending(IsActive="false", Name="Alice Gone")], st(held))
    assert d.action is Action.DEPROVISIONED
    assert d.effect == WriteTombstone(
        agent_id="a1",
        system_modstamp=DT1,
        insert=True,
        deprovisioned=True,
        delete_agent=True,
        released_key="alice@acme.com",
        name="Alice Gone",  # the tombstone says who the user was
    )
    assert d.end_sessions is not None and d.end_sessions.agent_id == "a1"
    assert d.end_sessions.reason is EndReason.DEPROVISIONED


def test_inactive_user_without_agent_keeps_the_newest_stamp_in_a_tombstone() -> None:
    (new,) = decide_changes([pending(IsActive="false")], st())
    assert new.action is Action.IGNORED and isinstance(new.effect, WriteTombstone)
    assert (new.effect.insert, new.effect.agent_id, new.effect.system_modstamp) == (True, None, DT1)
    tomb = StoredUser(ALICE, "a1", False, DT0, None)
    (newer,) = decide_changes([pending(IsActive="false")], st(tomb))
    assert isinstance(newer.effect, WriteTombstone)
    assert (newer.effect.insert, newer.effect.deprovisioned) == (False, False)
    assert (newer.effect.agent_id, newer.effect.system_modstamp) == ("a1", DT1)
    same = StoredUser(ALICE, "a1", False, DT1, None)
    (nothing,) = decide_changes([pending(IsActive="false")], st(same))
    assert nothing.action is Action.IGNORED and nothing.effect is None


def test_stale_and_failed_changes_write_nothing() -> None:
    held = StoredUser(ALICE, "a1", True, DT2, "alice@acme.com")
    (stale,) = decide_changes([pending()], st(held))
    assert stale.action is Action.STALE and stale.effect is None and stale.end_sessions is None
    bob = StoredUser(BOB, "b1", True, DT0, "alice@acme.com")
    (failed,) = decide_changes([pending()], st(bob))
    assert failed.action is Action.FAILED and failed.effect is None
    assert failed.park is not None and failed.park.holder_crm_id == BOB
    assert failed.park.username_key == "alice@acme.com"


def test_an_agent_that_becomes_disabled_has_its_sessions_ended() -> None:
    held = StoredUser(ALICE, "a1", True, DT0, "alice@acme.com", data=agent_json())
    (d,) = decide_changes([pending(CallCenterId=None)], st(held))
    assert d.action is Action.UPDATED and d.agent is not None and d.agent.disabled
    assert d.end_sessions is not None and d.end_sessions.reason is EndReason.DISABLED
    assert d.end_sessions.agent_id == "a1"
    assert "no CallCenterId" in d.reason
    # already disabled: nothing more to end; enabled again: nothing to end
    off = StoredUser(ALICE, "a1", True, DT0, "alice@acme.com", data=agent_json(CallCenterId=None))
    (again,) = decide_changes([pending(CallCenterId=None, Name="X")], st(off))
    assert again.end_sessions is None
    (back,) = decide_changes([pending()], st(off))
    assert back.end_sessions is None and back.agent is not None and not back.agent.disabled


def test_created_disabled_says_why() -> None:
    (d,) = decide_changes([pending(CallCenterId=None)], st())
    assert d.reason == "IsActive is true: new agent, disabled: no CallCenterId"
    (enabled,) = decide_changes([pending()], st())
    assert enabled.reason == "IsActive is true: new agent"


def test_a_queried_user_and_a_notification_get_the_same_decision() -> None:
    n = note(Name="Same")
    (from_message,) = plan_message([n], st(), feature_enabled=True)
    change = user_change(n.record_id or "", n.fields)
    assert change.agent is not None
    queried = PendingChange(
        index=0,
        notification_id=from_message.notification_id,
        agent=change.agent,
        stamp=change.stamp,
        active=change.active,
    )
    assert decide_changes([queried], st()) == [from_message]


def test_a_parked_change_applies_once_decided_again() -> None:
    parked = ParkedChange(
        id=7,
        crm_id=ALICE,
        username_key="alice@acme.com",
        record=pending().agent,
        system_modstamp=DT1,
        notification_id=None,
    )
    (d,) = decide_parked([parked], st(parked={ALICE: (parked,)}), first_index=3)
    assert d.action is Action.CREATED and d.index == 3 and d.unpark == (7,)
    assert not d.mark_processed and "parked change decided again" in d.reason
    newer = StoredUser(ALICE, "a1", True, DT2, "other@acme.com")
    (stale,) = decide_parked([parked], st(newer, parked={ALICE: (parked,)}), first_index=0)
    assert stale.action is Action.STALE and stale.unpark == (7,) and stale.effect is None


class _ScanOwners:
    """The owners map as ``decide`` kept it before (a plain dict, every release a scan of
    all owners): the reference the linear one must agree with."""

    def __init__(self, owners: Any) -> None:
        self._by_key = dict(owners)

    def get(self, key: str) -> str | None:
        return self._by_key.get(key)

    def release(self, crm_id: str) -> list[str]:
        keys = [k for k, v in self._by_key.items() if v == crm_id]
        for key in keys:
            del self._by_key[key]
        return keys

    def claim(self, key: str, crm_id: str) -> None:
        self._by_key[key] = crm_id


def test_a_big_batch_decides_as_the_scanning_owners_map_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """3,000 changes of 1,200 users against 1,000 stored ones: renames, handovers, swaps,
    chains, collisions, deprovisions, restores, repeats and stale changes all mixed; the
    linear owners map gives exactly the decisions of the old scanning one."""
    import random

    from sf_metadata import decide

    rng = random.Random(10)
    users = [sf_id("005", 5000 + i) for i in range(1200)]
    names = [f"user{i}@acme.com" for i in range(900)]
    stamps = [datetime(2026, 11, 20, 10, m, tzinfo=UTC) for m in range(60)]
    stored: list[StoredUser] = []
    taken: set[str] = set()
    for crm in users[:1000]:
        free = [n for n in rng.sample(names, 5) if n not in taken]
        if free and rng.random() < 0.8:
            taken.add(free[0])
            data = agent_json(Username=free[0], Email=free[0])
            stored.append(StoredUser(crm, f"a-{crm}", True, rng.choice(stamps), free[0], data=data))
        else:
            stored.append(StoredUser(crm, f"a-{crm}", False, rng.choice(stamps), None))
    state = st(*stored)
    changes = []
    for index in range(3000):
        name = rng.choice(names)
        change = user_change(
            rng.choice(users),
            fields(
                Username=name,
                Email=name,
                IsActive="true" if rng.random() < 0.8 else "false",
                SystemModstamp=rng.choice(stamps).isoformat(),
            ),
        )
        assert change.agent is not None
        changes.append(
            PendingChange(
                index=index,
                notification_id=None,
                agent=change.agent,
                stamp=change.stamp,
                active=change.active,
            )
        )

    linear = decide_changes(changes, state)
    monkeypatch.setattr(decide, "_Owners", _ScanOwners)
    scanning = decide_changes(changes, state)

    assert linear == scanning
    actions = {d.action for d in linear}
    assert {Action.CREATED, Action.UPDATED, Action.DEPROVISIONED, Action.RESTORED} <= actions
    assert {Action.FAILED, Action.STALE} <= actions
