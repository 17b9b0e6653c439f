"""The pure reconcile plan (CONTRACT section 6): one row per User read, the receiver's
rules, the username tie rules, notFound, the deletion guard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sf_metadata.decision import StoredState, StoredUser
from sf_metadata.effects import UpsertAgent, WriteTombstone
from sf_metadata.reconcile import (
    DeletionGuard,
    ReconcileAction,
    ReconcileState,
    plan_users,
    read_user,
)
from sf_metadata.soql import MAX_IDS, record_fields, soql_quote, user_query
from tests.factories import sf_id
from tests.user_records import make_user_record

A = ReconcileAction
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def stored_agent(n: int, **kw: Any) -> StoredUser:
    """A provisioned agent exactly as ``make_user_record(n)`` maps (unless ``data`` given)."""
    record = make_user_record(n)
    agent = read_user(record).agent
    assert agent is not None
    defaults: dict[str, Any] = {
        "crm_id": sf_id("005", n),
        "agent_id": f"{n:032x}",
        "provisioned": True,
        "system_modstamp": T0,
        "username": agent.username,
        "data": agent.to_json(),
    }
    if "stamp" in kw:
        kw["system_modstamp"] = kw.pop("stamp")
    defaults.update(kw)
    if not defaults["provisioned"]:
        defaults["has_tombstone"] = True
    return StoredUser(**defaults)


def state(*stored: StoredUser, full: bool = True) -> ReconcileState:
    holders = {s.username.casefold(): s.crm_id for s in stored if s.provisioned and s.username}
    return ReconcileState(
        StoredState({s.crm_id: s for s in stored}, holders, frozenset(), organization_id="acme"),
        full=full,
        agent_count=sum(1 for s in stored if s.provisioned),
    )


def plan(records: list[dict[str, Any]], st: ReconcileState) -> Any:
    return plan_users([read_user(r) for r in records], st)


def actions(p: Any) -> list[tuple[str, str]]:
    return [(r.crm_id[-8:], r.action.value) for r in p.rows]


def test_every_action_once_and_counts() -> None:
    p = plan(
        [
            make_user_record(1),  # new
            make_user_record(2, Name="Renamed"),  # differs
            make_user_record(3),  # tombstone with agent id
            make_user_record(4, IsActive=False),  # provisioned -> deprovision
            make_user_record(5),  # same as stored
            make_user_record(6, IsActive=None),  # undecidable
            make_user_record(7, IsActive=False),  # never provisioned
        ],
        state(
            stored_agent(2),
            stored_agent(3, provisioned=False, username=None, data=None),
            stored_agent(4),
            stored_agent(5),
            stored_agent(9),  # not read
        ),
    )
    assert [r.action for r in p.rows] == [
        A.CREATE,
        A.UPDATE,
        A.RESTORE,
        A.DEPROVISION,
        A.UNCHANGED,
        A.FAILED,
        A.UNCHANGED,
    ]
    assert p.counts == {
        "create": 1,
        "update": 1,
        "restore": 1,
        "deprovision": 1,
        "unchanged": 2,
        "failed": 1,
        "notFound": 1,
    }
    assert [n.crm_id for n in p.not_found] == [sf_id("005", 9)]
    assert p.rows[5].reason == "IsActive is missing"
    # an inactive never-provisioned user leaves a tombstone; an identical agent writes nothing
    assert p.rows[6].writes and p.rows[6].decision is not None
    assert isinstance(p.rows[6].decision.effect, WriteTombstone)
    assert not p.rows[4].writes
    assert isinstance(p.rows[3].decision.effect if p.rows[3].decision else None, WriteTombstone)
    assert isinstance(p.rows[0].decision.effect if p.rows[0].decision else None, UpsertAgent)
    assert len(p.decisions) == 5  # create, update, restore, deprovision, tombstone


def test_newer_stored_change_is_unchanged_never_rolled_back() -> None:
    later = datetime(2026, 11, 21, tzinfo=UTC)
    p = plan(
        [make_user_record(1, IsActive=False), make_user_record(2, Name="Old name")],
        state(stored_agent(1, stamp=later), stored_agent(2, stamp=later)),
    )
    assert [r.action for r in p.rows] == [A.UNCHANGED, A.UNCHANGED]
    assert not any(r.writes for r in p.rows)
    assert "older than the stored change" in p.rows[0].reason


def test_unchanged_agent_with_newer_salesforce_stamp_advances_the_stamp() -> None:
    earlier = datetime(2026, 11, 1, tzinfo=UTC)
    p = plan([make_user_record(1)], state(stored_agent(1, stamp=earlier)))
    assert p.rows[0].action is A.UNCHANGED
    assert p.rows[0].writes  # only the stamp moves, so a late older message stays stale
    effect = p.rows[0].decision.effect if p.rows[0].decision else None
    assert isinstance(effect, UpsertAgent) and not effect.data_changed


def test_incremental_read_lists_no_not_found() -> None:
    p = plan([make_user_record(1)], state(stored_agent(1), stored_agent(2), full=False))
    assert p.not_found == () and p.counts["notFound"] == 0


def test_two_users_claim_one_username_earlier_stamp_then_id_wins() -> None:
    shared = {"Username": "not-an-address", "Email": "shared@acme.com"}
    p = plan(
        [
            make_user_record(2, SystemModstamp="2026-11-20T09:00:00.000Z", **shared),
            make_user_record(1, SystemModstamp="2026-11-20T09:00:00.000Z", **shared),
            make_user_record(3, SystemModstamp="2026-11-19T09:00:00.000Z", **shared),
        ],
        state(),
    )
    assert [r.action for r in p.rows] == [A.FAILED, A.FAILED, A.CREATE]
    assert p.rows[0].reason == (
        f"username shared@acme.com is already used by Salesforce user {sf_id('005', 3)}"
    )
    p = plan(
        [
            make_user_record(2, **shared),
            make_user_record(1, **shared),
        ],
        state(),
    )
    assert [r.action for r in p.rows] == [A.FAILED, A.CREATE]


def test_holder_keeps_its_username_even_when_newer() -> None:
    shared = {"Username": "x", "Email": "Shared@acme.com"}
    holder = stored_agent(5, username="shared@ACME.com")
    p = plan(
        [
            make_user_record(1, SystemModstamp="2026-01-01T00:00:00.000Z", **shared),
            make_user_record(5, SystemModstamp="2026-12-01T00:00:00.000Z", **shared),
        ],
        state(holder),
    )
    assert [r.action for r in p.rows] == [A.FAILED, A.UPDATE]


def test_username_released_by_rename_or_deprovision_in_the_same_read_is_free() -> None:
    holder = stored_agent(5)
    taken = holder.username
    assert taken is not None
    p = plan(
        [
            make_user_record(1, Username=taken, Email=taken),
            make_user_record(5, Username="renamed@acme.com", Email="renamed@acme.com"),
        ],
        state(holder),
    )
    assert [r.action for r in p.rows] == [A.CREATE, A.UPDATE]
    p = plan(
        [make_user_record(1, Username=taken, Email=taken), make_user_record(5, IsActive=False)],
        state(holder),
    )
    assert [r.action for r in p.rows] == [A.CREATE, A.DEPROVISION]


def test_holder_not_read_or_failed_keeps_the_username_and_a_loser_keeps_its_own() -> None:
    a, b = stored_agent(5), stored_agent(6)
    assert a.username and b.username
    # 1 wants a's name (a not read: keeps it); 6 wants 7's old name? chain: 6 -> a's name
    # fails, so 6 keeps its own, so 8 who wants 6's name fails too.
    p = plan(
        [
            make_user_record(1, Username=a.username, Email=a.username),
            make_user_record(6, Username=a.username, Email=a.username),
            make_user_record(8, Username=b.username, Email=b.username),
        ],
        state(a, b, full=False),
    )
    assert [r.action for r in p.rows] == [A.FAILED, A.FAILED, A.FAILED]
    assert p.rows[2].reason.endswith(sf_id("005", 6))


def test_repeated_user_counted_once_each_row() -> None:
    p = plan(
        [
            make_user_record(1, Name="Old", SystemModstamp="2026-11-01T00:00:00.000Z"),
            make_user_record(1, Name="New", SystemModstamp="2026-11-02T00:00:00.000Z"),
        ],
        state(),
    )
    assert [r.action for r in p.rows] == [A.UNCHANGED, A.CREATE]
    assert p.rows[1].agent is not None and p.rows[1].agent.name == "New"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"Id": "not-an-id"}, "Id:"),
        ({"Id": None}, "the User record has no Id"),
        ({"SystemModstamp": "yesterday"}, "SystemModstamp is 'yesterday'"),
        ({"ProfileId": "bad"}, "ProfileId:"),
    ],
)
def test_undecidable_records_fail_with_the_receivers_reason(
    record: dict[str, Any], reason: str
) -> None:
    r = make_user_record(1)
    r.update(record)
    p = plan([r], state())
    assert p.rows[0].action is A.FAILED
    assert reason in p.rows[0].reason


def test_null_custom_field_left_out_and_text_kept() -> None:
    r = make_user_record(1, Team__c="Blue", Score__c=None)
    r["Score__c"] = None
    r["Level__c"] = 3
    agent = read_user(r).agent
    assert agent is not None
    assert agent.custom_fields == {"Level__c": "3", "Team__c": "Blue"}
    assert "attributes" not in record_fields(r)


def test_guard_defaults() -> None:
    guard = DeletionGuard()
    assert guard.hold_reason(10, 20) is None  # at the floor: never held by share
    assert guard.hold_reason(11, 50) is not None  # 22 % of 50
    assert guard.hold_reason(11, 100) is None  # 11 %
    assert guard.hold_reason(501, 100_000) is not None  # above the count
    assert DeletionGuard(max_deletions=0).hold_reason(1, 1000) is not None


def test_queries() -> None:
    assert soql_quote("O'Brien\\") == "'O\\'Brien\\\\'"
    full = user_query(["Team__c"])
    assert full.startswith("SELECT Id, SystemModstamp, LastModifiedDate, CallCenterId")
    assert full.endswith(", Team__c FROM User ORDER BY Id")
    inc = user_query(since=datetime(2026, 11, 20, 10, 15, tzinfo=UTC))
    assert "WHERE SystemModstamp >= 2026-11-20T10:00:00Z ORDER BY Id" in inc
    with pytest.raises(ValueError):
        user_query(["Name; DROP"])
    chosen = user_query(ids=["005000000000001AAA", "005000000000002AAA"])
    assert chosen.endswith(
        " FROM User WHERE Id IN ('005000000000001AAA', '005000000000002AAA') ORDER BY Id"
    )
    for wrong in ([], ["005000000000001AAA"] * (MAX_IDS + 1)):
        with pytest.raises(ValueError):
            user_query(ids=wrong)


def test_record_fields_fast_types_give_the_text_of_the_general_rule() -> None:
    """``record_fields`` writes exact str/bool/int values directly: the same text the
    general rule (``_text``: JSON text for numbers) gives, for any such value."""
    from hypothesis import given
    from hypothesis import strategies as st

    from sf_metadata.soql import _text

    values = st.one_of(st.text(), st.booleans(), st.integers(), st.floats(allow_nan=False))

    @given(st.dictionaries(st.text(min_size=1).filter(lambda k: k != "attributes"), values))
    def same(record: dict[str, object]) -> None:
        assert record_fields(record) == {k: _text(v) for k, v in record.items()}

    same()
