"""Fuzzing the envelope parser and the id functions (issue 4, item 5).

Property: whatever the bytes, ``parse_outbound_message`` returns an ``OutboundMessage`` or
raises an :class:`~sf_metadata.errors.AgentProvisionError` subclass (an
:class:`EnvelopeError` in fact); never another exception, never a hang (each test is
bounded by pytest-timeout, and hypothesis runs few examples with ``deadline=None``).
XML bombs are refused at their DTD or entity declaration: :class:`ForbiddenXml`, asserted
as an error, not a time. Bomb shapes: reference ``outbound-receiver-bugs.md`` and the
defusedxml README (https://github.com/tiran/defusedxml#attack-vectors).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sf_metadata import ids
from sf_metadata.errors import (
    AgentProvisionError,
    EnvelopeError,
    ForbiddenXml,
    InvalidSalesforceId,
)
from sf_metadata.outbound import OutboundMessage
from sf_metadata.soap import parse_outbound_message
from tests.factories import DEMO_ORG_ID, make_notification, make_outbound_message, sf_id

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

pytestmark = pytest.mark.timeout(120)


def _valid(n: int = 2, **kw: object) -> bytes:
    notes = [make_notification(Team__c="Tier 2 & <Escalations>") for _ in range(n)]
    return make_outbound_message(notes, **kw)  # type: ignore[arg-type]


SEEDS = [
    _valid(),
    _valid(0),
    _valid(3, compact=True, bom=True, declaration=False),
    _valid(1, prefixes={"outbound": "out", "sf": "s"}),
]


def _parse_or_typed_error(data: bytes) -> OutboundMessage | AgentProvisionError:
    try:
        message = parse_outbound_message(data)
    except AgentProvisionError as exc:
        assert isinstance(exc, EnvelopeError), f"{type(exc).__name__} out of the parser"
        assert exc.message, "an envelope error names its problem"
        return exc
    assert ids.is_salesforce_id(message.organization_id, "00D")
    assert len(message.organization_id) == 18
    assert len(message.notifications) <= 100
    return message


# --- the parser -------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_a_message_or_a_typed_error(data: bytes) -> None:
    _parse_or_typed_error(data)


_SNIPPETS = [
    b"<!DOCTYPE x>",
    b"<!ENTITY a 'b'>",
    b"&a;",
    b"&amp;",
    b"&#0;",
    b"&#x10FFFF;",
    b"<![CDATA[",
    b"]]>",
    b"<?xml version='1.0'?>",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"<",
    b">",
    b"</",
    b'xmlns:sf="urn:other"',
    b'xsi:nil="true"',
    b"<sObject>",
    b"</Notification>",
    b"<Notification>",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"<!--",
    b"-->",
    b'xsi:type="x:User"',
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(_SNIPPETS) | st.binary(max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del data[pos:]
        elif op == "cut" and pos < len(data):
            end = draw(st.integers(pos, len(data)))
            data[pos:pos] = data[pos:end]  # duplicate a slice: repeated elements
    return bytes(data)


@FUZZ
@given(_mutated())
def test_mutated_messages_give_a_message_or_a_typed_error(data: bytes) -> None:
    _parse_or_typed_error(data)


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
_idish = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEFxyzXYZ", min_size=0, max_size=20),
    st.builds(sf_id, st.sampled_from(["005", "00D", "04l", "00e", "abc"]), st.integers(0, 10**9)),
    _text,
)


@st.composite
def _structured(draw: st.DrawFn) -> bytes:
    count = draw(st.sampled_from([0, 1, 2, 5, 100, 101]))
    template = [
        make_notification(
            user_id=draw(_idish),
            notification_id=draw(_idish),
            sobject_type=draw(st.sampled_from(["User", "Contact", "", "a b", "x:y"])),
            IsActive=draw(st.sampled_from(["true", "false", "", "TRUE", None])),
            SystemModstamp=draw(st.sampled_from(["2026-11-20T10:00:00.000Z", "yesterday", ""])),
            Name=draw(_text),
            Custom_Field__c=draw(_text),
        )
    ]
    return make_outbound_message(
        template * count,
        organization_id=draw(st.one_of(st.just(DEMO_ORG_ID), _idish)),
        session_id=draw(st.one_of(st.none(), _text)),
        compact=draw(st.booleans()),
        bom=draw(st.booleans()),
        declaration=draw(st.booleans()),
        prefixes=draw(st.sampled_from([None, {"outbound": "o"}, {"soapenv": "S", "sf": "q"}])),
    )


@FUZZ
@given(_structured())
def test_structured_messages_give_a_message_or_a_typed_error(data: bytes) -> None:
    result = _parse_or_typed_error(data)
    if isinstance(result, OutboundMessage):
        for note in result.notifications:
            assert note.fields.get("Custom_Field__c") is not None


# --- XML bombs: refused at the declaration ----------------------------------------------

_ENVELOPE_HEAD = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
)
_ENVELOPE_TAIL = b"</notifications></soapenv:Body></soapenv:Envelope>"


def _bomb(doctype: bytes, org: bytes = b"&lol9;") -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        + doctype
        + b"\n"
        + _ENVELOPE_HEAD
        + b"<OrganizationId>"
        + org
        + b"</OrganizationId>"
        + _ENVELOPE_TAIL
    )


_LAUGHS = b'<!ENTITY lol "lol">' + b"".join(
    b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
    for i in range(1, 10)
)

BOMBS = {
    "billion laughs": _bomb(b"<!DOCTYPE soapenv:Envelope [" + _LAUGHS + b"]>"),
    "quadratic blowup": _bomb(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY a "' + b"x" * 50_000 + b'">]>', b"&a;" * 1000
    ),
    "external entity (file)": _bomb(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', b"&xxe;"
    ),
    "external entity (network)": _bomb(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>', b"&xxe;"
    ),
    "parameter entities": _bomb(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY % pe SYSTEM "http://127.0.0.1:9/evil.dtd">%pe;]>',
        b"00D000000000001",
    ),
    "internal parameter entity": _bomb(
        b"<!DOCTYPE soapenv:Envelope [<!ENTITY % p \"<!ENTITY q 'boom'>\"> %p;]>", b"&q;"
    ),
    "external DTD": _bomb(
        b'<!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1:9/soap.dtd">', b"00D000000000001"
    ),
    "public external DTD": _bomb(
        b'<!DOCTYPE soapenv:Envelope PUBLIC "-//X//Y//EN" "file:///etc/hostname">',
        b"00D000000000001",
    ),
    "bare DTD": _bomb(b"<!DOCTYPE soapenv:Envelope>", b"00D000000000001"),
    "internal subset, no entity": _bomb(
        b"<!DOCTYPE soapenv:Envelope [<!ELEMENT x ANY>]>", b"00D000000000001"
    ),
    # the declaration is refused before the parser reaches the broken rest
    "declaration then junk": b'<!DOCTYPE x [<!ENTITY a "b">]><unclosed',
    "UTF-16 billion laughs": (
        '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE soapenv:Envelope ['
        + _LAUGHS.decode()
        + "]>"
        + (_ENVELOPE_HEAD + b"<OrganizationId>&lol9;</OrganizationId>" + _ENVELOPE_TAIL).decode()
    ).encode("utf-16"),
    "with BOM": b"\xef\xbb\xbf" + _bomb(b"<!DOCTYPE soapenv:Envelope [" + _LAUGHS + b"]>"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_xml_bombs_are_refused_as_forbidden_xml(name: str) -> None:
    with pytest.raises(ForbiddenXml):
        parse_outbound_message(BOMBS[name])


def test_a_bomb_inside_a_valid_outbound_message_is_refused() -> None:
    valid = _valid(1)
    declaration, rest = valid.split(b"\n", 1)
    bomb = declaration + b"\n<!DOCTYPE soapenv:Envelope [" + _LAUGHS + b"]>\n" + rest
    assert parse_outbound_message(valid).notifications  # the same message without the DTD
    with pytest.raises(ForbiddenXml):
        parse_outbound_message(bomb)


@FUZZ
@given(
    depth=st.integers(1, 12),
    width=st.integers(1, 20),
    kind=st.sampled_from(["general", "parameter", "external"]),
)
def test_generated_entity_bombs_are_refused(depth: int, width: int, kind: str) -> None:
    if kind == "general":
        decls = b'<!ENTITY e0 "x">' + b"".join(
            b'<!ENTITY e%d "%s">' % (i, (b"&e%d;" % (i - 1)) * width) for i in range(1, depth)
        )
        use = b"&e%d;" % (depth - 1)
    elif kind == "parameter":
        decls = b"<!ENTITY %% p%d \"<!ENTITY g '%s'>\"> %%p%d;" % (depth, b"y" * width, depth)
        use = b"&g;"
    else:
        decls = b'<!ENTITY ext SYSTEM "file:///dev/zero">'
        use = b"&ext;" * width
    with pytest.raises(ForbiddenXml):
        parse_outbound_message(_bomb(b"<!DOCTYPE soapenv:Envelope [" + decls + b"]>", use))


# --- the id functions ---------------------------------------------------------------------

_anything = st.one_of(
    st.none(),
    st.integers(),
    st.binary(max_size=20),
    st.text(max_size=25),
    st.text(
        alphabet="0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        min_size=14,
        max_size=19,
    ),
    st.text(alphabet="0123456789aAzZ\u0660\uff21\u00e9", min_size=15, max_size=18),
)
_prefix = st.one_of(st.none(), st.sampled_from(["005", "00D", "04l", ""]), st.text(max_size=4))


def _typed(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except AgentProvisionError as exc:
        assert isinstance(exc, InvalidSalesforceId), f"{type(exc).__name__} out of {fn}"
        return exc


@FUZZ
@given(_anything, _prefix)
def test_id_functions_answer_or_raise_invalid_salesforce_id(value: object, prefix: object) -> None:
    is_id = ids.is_salesforce_id(value, prefix)  # type: ignore[arg-type]
    assert isinstance(is_id, bool)
    canon = _typed(ids.canonical_id, value, prefix)
    assert isinstance(canon, str) == is_id
    if isinstance(canon, str):
        assert len(canon) == 18 and canon[:15] == value[:15]  # type: ignore[index]
        assert ids.to_18(canon) == canon  # idempotent
        assert ids.to_15(canon) == canon[:15]
        assert ids.same_org_id(canon, value)  # type: ignore[arg-type]
    for fn in (ids.to_18, ids.to_15, ids.checksum_suffix):
        _typed(fn, value)
    assert isinstance(ids.same_org_id(value, value), bool)  # type: ignore[arg-type]


@FUZZ
@given(
    st.text(
        alphabet="0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        min_size=15,
        max_size=15,
    )
)
def test_the_suffix_makes_ids_unique_without_case(id15: str) -> None:
    full = ids.to_18(id15)
    flipped = id15.swapcase()
    if flipped != id15:
        assert ids.to_18(flipped).lower() != full.lower()
        assert not ids.same_org_id(id15, flipped)
