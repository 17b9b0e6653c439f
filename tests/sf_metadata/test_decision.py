from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sf_metadata.decision import (
    Action,
    StoredState,
    StoredUser,
    parse_stamp,
    plan_message,
    read_user_changes,
)
from sf_metadata.errors import NotificationError
from sf_metadata.outbound import Notification
from tests.factories import OMIT, make_notification, sf_id

T0 = "2026-11-20T10:00:00.000Z"
T1 = "2026-11-20T11:00:00.000Z"
T2 = "2026-11-20T12:00:00.000Z"
DT0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
DT1 = datetime(2026, 11, 20, 11, tzinfo=UTC)
DT2 = datetime(2026, 11, 20, 12, tzinfo=UTC)
ALICE = sf_id("005", 101)
BOB = sf_id("005", 102)
CAROL = sf_id("005", 103)
EMPTY = StoredState(users={}, username_owners={}, processed_ids=frozenset())


def note(user_id: str = ALICE, **fields: Any) -> Notification:
    d = make_notification(user_id=user_id, **fields)
    return Notification(
        notification_id=None if d["notification_id"] is OMIT else d["notification_id"],
        sobject_type=None if d["sobject_type"] is OMIT else d["sobject_type"],
        record_id=None if d["record_id"] is OMIT else d["record_id"],
        fields=d["fields"],
    )


def state(
    *users: StoredUser, owners: dict[str, str] | None = None, processed: set[str] | None = None
) -> StoredState:
    owner_map = (
        owners
        if owners is not None
        else {u.username.casefold(): u.crm_id for u in users if u.provisioned and u.username}
    )
    return StoredState({u.crm_id: u for u in users}, owner_map, frozenset(processed or ()))


def stored(
    crm_id: str = ALICE,
    *,
    provisioned: bool = True,
    stamp: datetime | None = DT1,
    username: str | None = "alice@acme.com",
    agent_id: str | None = "agent-1",
) -> StoredUser:
    return StoredUser(crm_id, agent_id, provisioned, stamp, username if provisioned else None)


def plan(*notes: Notification, st: StoredState = EMPTY, enabled: bool = True) -> list[Any]:
    return plan_message(list(notes), st, feature_enabled=enabled)


def test_feature_disabled_ignores_everything_without_marking() -> None:
    decisions = plan(note(), note(BOB, IsActive="false"), enabled=False)
    assert [(d.action, d.reason, d.mark_processed) for d in decisions] == [
        (Action.IGNORED, "feature disabled", False)
    ] * 2


def test_non_user_is_ignored_and_marked() -> None:
    (d,) = plan(note(sobject_type="Contact", LastName="Doe"))
    assert d.action is Action.IGNORED and d.mark_processed and "Contact" in d.reason
    (d,) = plan(note(sobject_type=OMIT))
    assert d.action is Action.IGNORED


@pytest.mark.parametrize("nid", [OMIT, "", "04l-bad", "04lshort"])
def test_missing_or_invalid_notification_id_fails_unmarked(nid: Any) -> None:
    (d,) = plan(note(notification_id=nid))
    assert (d.action, d.mark_processed, d.notification_id) == (Action.FAILED, False, None)
    assert "Id" in d.reason


def test_notification_id_is_canonicalised() -> None:
    (d,) = plan(note(notification_id="04lxx00000000aaZZZ"))
    assert d.notification_id == "04lxx00000000aa" + "AAA"
    assert d.action is Action.CREATED


def test_duplicates_across_and_within_messages() -> None:
    n = note()
    (d,) = plan(n, st=state(processed={n.notification_id or ""}))
    assert (d.action, d.mark_processed) == (Action.DUPLICATE, False)
    first, again = plan(n, n)
    assert first.action is Action.CREATED and first.mark_processed
    assert (again.action, again.mark_processed) == (Action.DUPLICATE, False)
    assert "repeated" in again.reason


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"user_id": OMIT}, "sf:Id"),
        ({"user_id": ""}, "sf:Id"),
        ({"user_id": "not-an-id"}, "Id"),
        ({"user_id": sf_id("00e", 1)}, "User id"),
        ({"IsActive": None}, "IsActive is missing"),
        ({"IsActive": ""}, "IsActive is missing"),
        ({"IsActive": "yes"}, "not a boolean"),
        ({"SystemModstamp": "yesterday"}, "SystemModstamp"),
        ({"SystemModstamp": None, "LastModifiedDate": "20/11/2026"}, "LastModifiedDate"),
    ],
)
def test_undecidable_user_notifications_fail_permanently(
    kwargs: dict[str, Any], match: str
) -> None:
    (d,) = plan(note(**kwargs))
    assert d.action is Action.FAILED and d.mark_processed
    assert match in d.reason
    assert d.agent is None


def test_one_failure_does_not_stop_the_others() -> None:
    bad, good = plan(note(IsActive=None), note(BOB))
    assert (bad.action, good.action) == (Action.FAILED, Action.CREATED)
    assert [bad.index, good.index] == [0, 1]


def test_stamp_prefers_system_modstamp_then_last_modified_date() -> None:
    assert parse_stamp({"SystemModstamp": T1, "LastModifiedDate": T0}) == DT1
    assert parse_stamp({"LastModifiedDate": T0}) == DT0
    assert parse_stamp({"SystemModstamp": "", "LastModifiedDate": T0}) == DT0
    assert parse_stamp({}) is None
    assert parse_stamp({"SystemModstamp": "2026-11-20T12:00:00+02:00"}) == DT0
    assert parse_stamp({"SystemModstamp": "2026-11-20T10:00:00"}) == DT0
    with pytest.raises(NotificationError):
        parse_stamp({"SystemModstamp": "nope"})


def test_lifecycle_created_updated_deprovisioned_restored() -> None:
    (d,) = plan(note(SystemModstamp=T1))
    assert (d.action, d.crm_id, d.stamp) == (Action.CREATED, ALICE, DT1)
    assert d.agent is not None and d.agent.crm_id == ALICE and d.mark_processed

    (d,) = plan(note(SystemModstamp=T2), st=state(stored()))
    assert d.action is Action.UPDATED and d.agent is not None

    (d,) = plan(note(SystemModstamp=T2, IsActive="false"), st=state(stored()))
    assert (d.action, d.agent, d.stamp) == (Action.DEPROVISIONED, None, DT2)

    tomb = stored(provisioned=False)
    (d,) = plan(note(SystemModstamp=T2), st=state(tomb))
    assert d.action is Action.RESTORED and d.agent is not None

    never = stored(provisioned=False, agent_id=None)
    (d,) = plan(note(SystemModstamp=T2), st=state(never))
    assert d.action is Action.CREATED


def test_inactive_user_not_provisioned_is_ignored_with_crm_id_and_stamp() -> None:
    for st in (EMPTY, state(stored(provisioned=False))):
        (d,) = plan(note(IsActive="false", SystemModstamp=T2), st=st)
        assert (d.action, d.reason) == (Action.IGNORED, "user is not provisioned")
        assert (d.crm_id, d.stamp, d.mark_processed) == (ALICE, DT2, True)


def test_active_user_without_call_center_is_a_disabled_agent() -> None:
    (d,) = plan(note(CallCenterId=None))
    assert d.action is Action.CREATED and d.agent is not None and d.agent.disabled


def test_across_messages_older_is_stale_equal_and_newer_apply() -> None:
    st = state(stored(stamp=DT1))
    (d,) = plan(note(SystemModstamp=T0), st=st)
    assert (d.action, d.mark_processed) == (Action.STALE, True)
    assert "older" in d.reason
    (d,) = plan(note(SystemModstamp=T1), st=st)
    assert d.action is Action.UPDATED
    (d,) = plan(note(SystemModstamp=None, LastModifiedDate=None), st=st)
    assert d.action is Action.UPDATED and d.stamp is None
    (d,) = plan(note(SystemModstamp=T0), st=state(stored(stamp=None)))
    assert d.action is Action.UPDATED


def test_older_reactivation_after_deprovision_is_stale() -> None:
    tomb = stored(provisioned=False, stamp=DT2)
    (d,) = plan(note(SystemModstamp=T1), st=state(tomb))
    assert d.action is Action.STALE


def test_naive_stored_stamp_is_taken_as_utc() -> None:
    st = state(stored(stamp=datetime(2026, 11, 20, 11)))
    (d,) = plan(note(SystemModstamp=T0), st=st)
    assert d.action is Action.STALE


def test_within_message_newest_wins_ties_go_to_the_later() -> None:
    newer, older = note(SystemModstamp=T2, Name="New"), note(SystemModstamp=T1, Name="Old")
    d_new, d_old = plan(newer, older)
    assert d_new.action is Action.CREATED and d_new.agent is not None
    assert d_new.agent.name == "New"
    assert (d_old.action, d_old.reason, d_old.mark_processed) == (
        Action.STALE,
        "superseded by a newer change in the same message",
        True,
    )

    first, second = plan(note(SystemModstamp=T1, Name="A"), note(SystemModstamp=T1, Name="B"))
    assert first.action is Action.STALE
    assert second.action is Action.CREATED and second.agent is not None
    assert second.agent.name == "B"

    active, inactive = plan(
        note(SystemModstamp=T1),
        note(SystemModstamp=T2, IsActive="false"),
        st=state(stored(stamp=DT0)),
    )
    assert (active.action, inactive.action) == (Action.STALE, Action.DEPROVISIONED)


def test_other_users_in_one_message_are_independent() -> None:
    a, b = plan(note(ALICE), note(BOB))
    assert (a.action, b.action, a.crm_id, b.crm_id) == (Action.CREATED, Action.CREATED, ALICE, BOB)


def test_crm_id_15_and_18_are_the_same_user() -> None:
    a, b = plan(note(ALICE[:15], SystemModstamp=T1), note(ALICE, SystemModstamp=T2))
    assert (a.crm_id, b.crm_id) == (ALICE, ALICE)
    assert (a.action, b.action) == (Action.STALE, Action.CREATED)


def test_username_held_by_another_user_fails() -> None:
    st = state(stored(BOB, username="Jane@Acme.com"))
    (d,) = plan(note(ALICE, Username="jane@acme.com"), st=st)
    assert d.action is Action.FAILED and d.mark_processed and d.agent is None
    assert d.reason == f"username jane@acme.com is already used by Salesforce user {BOB}"


def test_username_kept_by_its_own_user_is_fine() -> None:
    (d,) = plan(note(ALICE, Username="Alice@acme.com", SystemModstamp=T2), st=state(stored(ALICE)))
    assert d.action is Action.UPDATED


def test_username_claimed_earlier_in_the_same_message_fails() -> None:
    a, b = plan(note(ALICE, Username="same@acme.com"), note(BOB, Username="same@acme.com"))
    assert a.action is Action.CREATED
    assert b.action is Action.FAILED and ALICE in b.reason


def test_username_released_by_earlier_deprovision_or_rename() -> None:
    # "Earlier" is the order of application: by stamp, equal stamps in document order.
    st = state(stored(BOB, username="jane@acme.com"))
    off, take = plan(
        note(BOB, IsActive="false", SystemModstamp=T2),
        note(ALICE, Username="jane@acme.com", SystemModstamp=T2),
        st=st,
    )
    assert (off.action, take.action) == (Action.DEPROVISIONED, Action.CREATED)

    rename, take = plan(
        note(BOB, Username="bob@acme.com", SystemModstamp=T2),
        note(ALICE, Username="jane@acme.com", SystemModstamp=T2),
        st=st,
    )
    assert (rename.action, take.action) == (Action.UPDATED, Action.CREATED)

    # A claim taken before the release in that order waits for it, as a parked change of
    # an earlier message would, and applies once the release is taken: the batch ends as
    # its changes delivered one by one, in order.
    take, later = plan(
        note(ALICE, Username="jane@acme.com", SystemModstamp=T2),
        note(BOB, IsActive="false", SystemModstamp=T2),
        st=st,
    )
    assert (take.action, later.action) == (Action.CREATED, Action.DEPROVISIONED)

    take, later = plan(
        note(ALICE, Username="jane@acme.com", SystemModstamp=T0),
        note(BOB, IsActive="false", SystemModstamp=T2),
        st=st,
    )
    assert (take.action, later.action) == (Action.CREATED, Action.DEPROVISIONED)

    # The holder renames to a name another user holds: nothing is released, the claim fails.
    st2 = state(stored(BOB, username="jane@acme.com"), stored(CAROL, username="carol@acme.com"))
    take, rename = plan(
        note(ALICE, Username="jane@acme.com", SystemModstamp=T2),
        note(BOB, Username="carol@acme.com", SystemModstamp=T2),
        st=st2,
    )
    assert (take.action, rename.action) == (Action.FAILED, Action.FAILED)
    assert take.park is not None and take.park.holder_crm_id == BOB


def test_username_released_by_an_older_change_later_in_the_document() -> None:
    st = state(stored(BOB, username="jane@acme.com", stamp=DT0))
    take, rename = plan(
        note(ALICE, Username="jane@acme.com", SystemModstamp=T2),
        note(BOB, Username="bob@acme.com", SystemModstamp=T1),
        st=st,
    )
    assert (take.action, rename.action) == (Action.CREATED, Action.UPDATED)

    take, off = plan(
        note(ALICE, Username="jane@acme.com", SystemModstamp=T2),
        note(BOB, IsActive="false", SystemModstamp=T1),
        st=st,
    )
    assert (take.action, off.action) == (Action.CREATED, Action.DEPROVISIONED)

    # A superseded rename released its name too (as delivered one by one, in order): Alice
    # takes it; Bob's newest change, back to it, collides and is parked, while his rename
    # (his newest change that does not collide) applies.
    take, rename, back = plan(
        note(ALICE, Username="jane@acme.com", SystemModstamp=T1),
        note(BOB, Username="bob@acme.com", SystemModstamp=T0),
        note(BOB, Username="jane@acme.com", SystemModstamp=T2),
        st=st,
    )
    assert (take.action, rename.action, back.action) == (
        Action.CREATED,
        Action.UPDATED,
        Action.FAILED,
    )
    assert rename.agent is not None and rename.agent.username == "bob@acme.com"
    assert back.park is not None and back.park.holder_crm_id == ALICE


def test_username_chain_is_decided_in_stamp_order() -> None:
    carol = sf_id("005", 103)
    st = state(
        stored(ALICE, username="a@acme.com", stamp=DT0),
        stored(BOB, username="b@acme.com", stamp=DT0, agent_id="agent-2"),
        stored(carol, username="c@acme.com", stamp=DT0, agent_id="agent-3"),
    )
    decisions = plan(
        note(carol, Username="b@acme.com", SystemModstamp="2026-11-20T13:00:00Z"),
        note(BOB, Username="a@acme.com", SystemModstamp=T2),
        note(ALICE, Username="z@acme.com", SystemModstamp=T1),
        st=st,
    )
    assert [d.action for d in decisions] == [Action.UPDATED] * 3
    assert [d.index for d in decisions] == [0, 1, 2]


@pytest.mark.parametrize("field", ["SystemModstamp", "LastModifiedDate"])
@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"])
def test_stamp_out_of_the_datetime_range_fails_that_notification(field: str, text: str) -> None:
    fields: dict[str, Any] = {"SystemModstamp": None, field: text}
    with pytest.raises(NotificationError, match=field):
        parse_stamp(fields)
    bad, good = plan(note(**fields), note(BOB))
    assert bad.action is Action.FAILED and field in bad.reason and bad.mark_processed
    assert good.action is Action.CREATED


def test_precomputed_changes_give_the_same_decisions() -> None:
    notes = [
        note(ALICE, Username="jane@acme.com"),
        note(BOB, IsActive="maybe"),
        note(sobject_type="Contact"),
    ]
    changes = read_user_changes(notes)
    assert changes[2] is None and changes[1] is not None and changes[1].error
    assert plan_message(notes, EMPTY, feature_enabled=True, changes=changes) == plan(*notes)


def test_none_username_never_collides() -> None:
    a, b = plan(note(ALICE, Username=None, Email="x"), note(BOB, Username=None, Email="y"))
    assert a.agent is not None and a.agent.username is None
    assert (a.action, b.action) == (Action.CREATED, Action.CREATED)


def test_collision_failure_of_a_stale_loser_does_not_block() -> None:
    old, new = plan(
        note(ALICE, Username="x@acme.com", SystemModstamp=T0),
        note(ALICE, Username="a@acme.com", SystemModstamp=T1),
        st=state(stored(BOB, username="x@acme.com")),
    )
    assert (old.action, new.action) == (Action.STALE, Action.CREATED)


def test_a_swap_with_its_intermediate_rename_in_one_message_applies() -> None:
    """Alice alpha -> tmp (T0), Bob beta -> alpha (T1), Alice tmp -> beta (T2), all in one
    message: Alice's superseded rename released alpha, so both land (attack finding 1)."""
    st = state(
        stored(ALICE, username="alpha@acme.com", stamp=DT0 - timedelta(days=1)),
        stored(BOB, username="beta@acme.com", stamp=DT0 - timedelta(days=1), agent_id="agent-2"),
    )
    first, bob, alice = plan(
        note(ALICE, Username="tmp@acme.com", SystemModstamp=T0),
        note(BOB, Username="alpha@acme.com", SystemModstamp=T1),
        note(ALICE, Username="beta@acme.com", SystemModstamp=T2),
        st=st,
    )
    assert (first.action, bob.action, alice.action) == (
        Action.STALE,
        Action.UPDATED,
        Action.UPDATED,
    )
    assert first.reason == "superseded by a newer change in the same message"
    assert bob.effect.username == "alpha@acme.com"
    assert alice.effect.username == "beta@acme.com"
    assert (bob.effect.released_key, alice.effect.released_key) == (
        "beta@acme.com",
        "alpha@acme.com",
    )


def test_a_swap_whose_intermediate_rename_was_lost_rotates() -> None:
    """Reconcile reads only where users are now: Alice holds beta, Bob alpha, Carol gamma in
    a three-way rotation of the stored names. Each waits on a name the next one gives up:
    they move together instead of parking on each other for good."""
    old = DT0 - timedelta(days=1)
    st = state(
        stored(ALICE, username="alpha@acme.com", stamp=old),
        stored(BOB, username="beta@acme.com", stamp=old, agent_id="agent-2"),
        stored(CAROL, username="gamma@acme.com", stamp=old, agent_id="agent-3"),
    )
    decisions = plan(
        note(BOB, Username="gamma@acme.com", SystemModstamp=T1),
        note(ALICE, Username="beta@acme.com", SystemModstamp=T2),
        note(CAROL, Username="alpha@acme.com", SystemModstamp=T0),
        st=st,
    )
    assert [d.action for d in decisions] == [Action.UPDATED] * 3
    assert [d.effect.username for d in decisions] == [
        "gamma@acme.com",
        "beta@acme.com",
        "alpha@acme.com",
    ]


def test_a_cycle_broken_by_an_outsider_does_not_rotate() -> None:
    """Alice wants Bob's name and Bob wants Dave's (Dave is not in the batch): no cycle, so
    both fail and park; nothing ends held twice."""
    dave = sf_id("005", 104)
    old = DT0 - timedelta(days=1)
    st = state(
        stored(ALICE, username="alpha@acme.com", stamp=old),
        stored(BOB, username="beta@acme.com", stamp=old, agent_id="agent-2"),
        stored(dave, username="delta@acme.com", stamp=old, agent_id="agent-4"),
    )
    alice, bob = plan(
        note(ALICE, Username="beta@acme.com", SystemModstamp=T1),
        note(BOB, Username="delta@acme.com", SystemModstamp=T2),
        st=st,
    )
    assert (alice.action, bob.action) == (Action.FAILED, Action.FAILED)
    assert (alice.park.holder_crm_id, bob.park.holder_crm_id) == (BOB, dave)
