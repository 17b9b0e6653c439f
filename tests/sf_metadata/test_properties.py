from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sf_metadata.errors import AgentProvisionError
from sf_metadata.ids import canonical_id, is_salesforce_id, to_15, to_18
from sf_metadata.soap import parse_outbound_message
from tests.factories import make_notification, make_outbound_message

ALNUM = string.ascii_letters + string.digits
ids15 = st.text(alphabet=ALNUM, min_size=15, max_size=15)
suffixes = st.text(alphabet=ALNUM, min_size=3, max_size=3)


@given(ids15, suffixes)
def test_to_18_is_idempotent_and_ignores_the_given_suffix(id15: str, suffix: str) -> None:
    full = to_18(id15)
    assert len(full) == 18 and full.startswith(id15)
    assert to_18(full) == full
    assert to_18(id15 + suffix) == full
    assert to_15(full) == id15
    assert is_salesforce_id(full) and is_salesforce_id(id15)


@given(ids15, ids15)
def test_18_char_ids_are_case_safe(a: str, b: str) -> None:
    # Different 15-char ids give 18-char ids that differ even case-insensitively.
    if a != b:
        assert to_18(a).lower() != to_18(b).lower()
    else:
        assert to_18(a) == to_18(b)


@given(ids15)
def test_swapping_case_changes_the_id(id15: str) -> None:
    swapped = id15.swapcase()
    if swapped != id15:
        assert to_18(swapped) != to_18(id15)
        assert to_18(swapped).lower() != to_18(id15).lower()


@given(st.text(max_size=30))
def test_canonical_id_raises_only_our_errors(value: str) -> None:
    try:
        result = canonical_id(value)
    except AgentProvisionError:
        assert not is_salesforce_id(value)
    else:
        assert len(result) == 18


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_parser_raises_only_our_errors_on_random_bytes(data: bytes) -> None:
    try:
        parse_outbound_message(data)
    except AgentProvisionError:
        pass


VALID = make_outbound_message([make_notification(), make_notification(IsActive="false")])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(VALID) - 1), st.integers(0, 2), st.binary(min_size=0, max_size=8)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_parser_raises_only_our_errors_on_mutated_messages(
    edits: list[tuple[int, int, bytes]],
) -> None:
    data = bytearray(VALID)
    for pos, kind, chunk in edits:
        pos = min(pos, len(data))
        if kind == 0:
            data[pos:pos] = chunk
        elif kind == 1:
            del data[pos : pos + len(chunk) + 1]
        else:
            data[pos : pos + len(chunk)] = chunk
    try:
        msg = parse_outbound_message(bytes(data))
    except AgentProvisionError:
        return
    assert len(msg.organization_id) == 18
