"""New agent ids are time-ordered by SystemModstamp and still deterministic (issue 11
item 2): 32 hex characters, the first 12 the stamp in milliseconds (UUIDv7 layout)."""

from __future__ import annotations

from datetime import UTC, datetime

from sf_metadata.decision import StoredState, plan_message
from sf_metadata.effects import UpsertAgent
from sf_metadata.outbound import Notification
from tests.factories import make_user_fields, next_id, sf_id


def _note(n: int, stamp: str | None) -> Notification:
    fields = make_user_fields(SystemModstamp=stamp, LastModifiedDate=stamp)
    return Notification(next_id("04l"), "User", sf_id("005", n), fields)


def _ids(notes: list[Notification]) -> list[str]:
    state = StoredState({}, {}, frozenset(), organization_id="acme")
    decisions = plan_message(notes, state, feature_enabled=True)
    effects = [d.effect for d in decisions]
    assert all(isinstance(e, UpsertAgent) for e in effects)
    return [e.agent_id for e in effects if isinstance(e, UpsertAgent)]


def test_new_ids_follow_the_stamps_and_are_deterministic() -> None:
    stamps = ["2026-11-20T10:00:00.000Z", "2026-11-20T10:00:00.001Z", "2027-01-01T00:00:00.000Z"]
    notes = [_note(i, s) for i, s in enumerate(stamps)]
    ids = _ids(notes)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    millis = int(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp() * 1000)
    assert ids[0][:12] == f"{millis:012x}" and ids[0][12] == "7"
    assert _ids(notes) == ids  # deciding twice gives the same ids


def test_users_with_one_stamp_get_distinct_ids() -> None:
    notes = [_note(i, "2026-11-20T10:00:00.000Z") for i in range(50)]
    ids = _ids(notes)
    assert len(set(ids)) == 50
    assert len({i[:12] for i in ids}) == 1


def test_the_uuid5_digest_is_uuid5s() -> None:
    """``decide`` builds the uuid5 hex without UUID objects: the same text as
    ``uuid.uuid5`` for any name (ids stay what they were)."""
    import uuid

    from hypothesis import given
    from hypothesis import strategies as st

    from sf_metadata.decide import _NEW_AGENT_NS, _uuid5_hex

    @given(st.text(max_size=300))
    def same(name: str) -> None:
        assert _uuid5_hex(name) == uuid.uuid5(_NEW_AGENT_NS, name).hex

    same()
