"""The one-pass parse agrees with the reference parse (issue 11 item 3, issue 12 item 6).

``try_parse_fast`` either declines (``None``) or returns exactly the message of
``parse_outbound_message_reference``; ``parse_outbound_message`` gives the reference's
result or the reference's error (type and text) for every input: the samples, the XML
bombs, and hypothesis-mutated messages. DTDs and entities never reach lxml on the way in:
the bombs are refused before libxml2 sees a byte (asserted with a spy on the tree parse).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bench._messages import bench_changes, render_message
from sf_metadata import _xml
from sf_metadata.errors import AgentProvisionError, ForbiddenXml
from sf_metadata.soap import (
    parse_outbound_message,
    parse_outbound_message_reference,
    try_parse_fast,
)
from tests.factories import NIL, make_notification, make_outbound_message
from tests.sf_metadata.test_fuzz import BOMBS, SEEDS, _mutated

pytestmark = pytest.mark.timeout(180)

DIFF = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _outcome(parse: Any, data: bytes) -> object:
    try:
        return parse(data)
    except AgentProvisionError as error:
        return (type(error), error.message)


def _assert_agree(data: bytes) -> bytes:
    reference = _outcome(parse_outbound_message_reference, data)
    fast = try_parse_fast(data)
    if fast is not None:
        assert fast == reference
    assert _outcome(parse_outbound_message, data) == reference
    return data


def _samples() -> dict[str, bytes]:
    one = make_notification(Team__c="Tier 2 & <Escalations>", Name="Jürgen Søn 漢字")
    nil = make_notification(Phone=NIL, MobilePhone="", Team__c=NIL)
    samples = {
        "plain": make_outbound_message([one]),
        "nil fields": make_outbound_message([nil, one]),
        "empty": make_outbound_message([]),
        "compact, BOM, no declaration": make_outbound_message(
            [one, nil], compact=True, bom=True, declaration=False
        ),
        "other prefixes": make_outbound_message([one], prefixes={"outbound": "o", "sf": "s"}),
        "default field namespace": make_outbound_message([one], prefixes={"sf": ""}),
        "session id": make_outbound_message([one], session_id="00D!AQ0AQ.secret"),
        "bench message": render_message(bench_changes(1, 100, run="d")[0]),
        "101 notifications": make_outbound_message([make_notification() for _ in range(101)]),
        "char references": make_outbound_message([one]).replace(b"Tier 2", b"Tier&#x20;&#50;"),
        "CDATA": make_outbound_message([one]).replace(b">Jane<", b"><![CDATA[Jane]]><"),
        "comment": make_outbound_message([one]).replace(b"<sf:Email>", b"<!-- c --><sf:Email>"),
        "pi": make_outbound_message([one]).replace(b"<sf:Email>", b"<?pi x?><sf:Email>"),
        "latin-1": make_outbound_message([one])
        .decode()
        .replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
        .encode("latin-1", "replace"),
        "utf-16": make_outbound_message([one])
        .decode()
        .replace('encoding="UTF-8"', 'encoding="UTF-16"')
        .encode("utf-16"),
        "non-ASCII element name": make_outbound_message([one]).replace(
            b"sf:Email>", "sf:Émail>".encode()
        ),
        "gt in an attribute": make_outbound_message([one]).replace(
            b"<sf:Email>", b'<sf:Email a=">">'
        ),
        "xsi:nil on a header and a field": make_outbound_message([nil]).replace(
            b"<ActionId>", b'<ActionId xsi:nil="1">'
        ),
        "nil attribute with text": make_outbound_message([one]).replace(
            b"<sf:Email>", b'<sf:Email xsi:nil="true">'
        ),
        "field holding an element": make_outbound_message([one]).replace(
            b">Jane<", b">Ja<sf:b/>ne<"
        ),
        "xml 1.1": make_outbound_message([one]).replace(b'version="1.0"', b'version="1.1"'),
        "leading space": b" " + make_outbound_message([one]),
        "type prefix redeclared on sObject": make_outbound_message([one]).replace(
            b'xsi:type="sf:User"', b'xsi:type="t:User" xmlns:t="urn:other"'
        ),
        "undeclared type prefix": make_outbound_message([one]).replace(
            b'xsi:type="sf:User"', b'xsi:type="u:User"'
        ),
    }
    return samples


SAMPLES = _samples()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_agree(name: str) -> None:
    _assert_agree(SAMPLES[name])


def test_plain_messages_take_the_one_pass_parse() -> None:
    for name in ("plain", "nil fields", "compact, BOM, no declaration", "bench message"):
        assert try_parse_fast(SAMPLES[name]) is not None, name
    for name in ("CDATA", "comment", "utf-16", "non-ASCII element name", "gt in an attribute"):
        assert try_parse_fast(SAMPLES[name]) is None, name


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_agree_and_never_reach_lxml(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _assert_agree(BOMBS[name])
    seen: list[bytes] = []
    real = etree.fromstring

    def spy(data: Any, parser: Any = None) -> Any:
        seen.append(data)
        return real(data, parser)

    monkeypatch.setattr(_xml.etree, "fromstring", spy)  # type: ignore[attr-defined]
    assert try_parse_fast(BOMBS[name]) is None
    with pytest.raises(ForbiddenXml):
        parse_outbound_message(BOMBS[name])
    assert seen == [], "a DTD reached the tree parser"


@DIFF
@given(_mutated())
def test_mutated_messages_agree(data: bytes) -> None:
    _assert_agree(data)


_SEED_TEXT = st.sampled_from([*SEEDS, SAMPLES["nil fields"], SAMPLES["other prefixes"]])


@DIFF
@given(
    _SEED_TEXT,
    st.lists(
        st.tuples(st.integers(0, 10**6), st.text(max_size=6).map(lambda t: t.encode("utf-8"))),
        min_size=1,
        max_size=4,
    ),
)
def test_text_mutations_agree(seed: bytes, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(seed)
    for position, chunk in edits:
        at = position % (len(data) + 1)
        data[at:at] = chunk
    _assert_agree(bytes(data))


# --- namespace declarations (issue 12 item 6) -----------------------------------------


def _many_declarations(count: int, notifications: int) -> bytes:
    base = make_outbound_message([make_notification() for _ in range(notifications)])
    declarations = b" ".join(b'xmlns:n%d="urn:x%d"' % (i, i) for i in range(count))
    return base.replace(b"<soapenv:Envelope ", b"<soapenv:Envelope " + declarations + b" ", 1)


class _Counting(_xml.NamespaceScopes):
    created: list[_xml.NamespaceScopes] = []

    def __init__(self) -> None:
        super().__init__()
        _Counting.created.append(self)


@pytest.mark.parametrize("parse", [parse_outbound_message, parse_outbound_message_reference])
def test_namespace_declarations_are_read_once_not_per_notification(
    parse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    declarations, notifications = 20_000, 100
    data = _many_declarations(declarations, notifications)
    _Counting.created = []
    monkeypatch.setattr(_xml, "NamespaceScopes", _Counting)
    message = parse(data)
    assert len(message.notifications) == notifications
    assert _Counting.created, "prefixes are resolved through NamespaceScopes"
    read = sum(scope.declarations_read for scope in _Counting.created)
    # every sObject declares its sf prefix; the Envelope's are never read per sObject
    assert read <= notifications + 10
    assert _outcome(parse_outbound_message_reference, data) == message


_PREFIXES = st.sampled_from(["a", "b", "sf", ""])


@st.composite
def _nested(draw: st.DrawFn) -> tuple[bytes, str]:
    depth = draw(st.integers(1, 5))
    opens: list[str] = []
    closes: list[str] = []
    for level in range(depth):
        decls = draw(st.lists(st.tuples(_PREFIXES, st.sampled_from(["u1", "u2", ""])), max_size=3))
        seen: dict[str, str] = {}
        for prefix, uri in decls:
            if prefix and not uri:
                continue  # xmlns:p="" is not well-formed
            seen[prefix] = uri
        attrs = "".join(
            f' xmlns{":" + p if p else ""}="{("urn:" + u) if u else ""}"' for p, u in seen.items()
        )
        opens.append(f"<e{level}{attrs}>")
        closes.insert(0, f"</e{level}>")
    return ("".join(opens) + "".join(closes)).encode(), draw(
        st.sampled_from(["a:T", "b:T", "sf:T", "T", ":T", "x:T", "a:b:T"])
    )


@settings(max_examples=200, deadline=None)
@given(_nested())
def test_scoped_resolution_equals_nsmap(case: tuple[bytes, str]) -> None:
    data, qname = case
    root = etree.fromstring(data)
    element = root
    while len(element):
        element = element[0]
    scopes = _xml.NamespaceScopes()
    for target in (element, root, element):  # repeated lookups use the kept declarations
        try:
            expected: object = _xml.resolve_qname(qname, target.nsmap)
        except AgentProvisionError as error:
            expected = error.message
        try:
            got: object = scopes.resolve_qname(qname, target)
        except AgentProvisionError as error:
            got = error.message
        assert got == expected


@pytest.mark.parametrize("own", [0, 3, 64, 65, 500])
def test_an_element_with_many_own_declarations_resolves_as_nsmap(own: int) -> None:
    """Past ``_OWN_EVENTS_MAX`` own declarations an element's scope comes from its map."""
    many = " ".join(f'xmlns:p{i}="urn:p{i}"' for i in range(own))
    data = (
        f'<r xmlns="urn:d" xmlns:a="urn:a1"><m {many} xmlns="" xmlns:a="urn:a2">'
        f'<leaf xmlns:b="urn:b"/></m></r>'
    ).encode()
    root = etree.fromstring(data)
    middle, leaf = root[0], root[0][0]
    scopes = _xml.NamespaceScopes()
    for target in (leaf, middle, root, leaf):
        for qname in ("a:T", "b:T", "T", "p0:T", f"p{max(own - 1, 0)}:T", "zz:T"):
            try:
                expected: object = _xml.resolve_qname(qname, target.nsmap)
            except AgentProvisionError as error:
                expected = error.message
            try:
                got: object = scopes.resolve_qname(qname, target)
            except AgentProvisionError as error:
                got = error.message
            assert got == expected, (own, target.tag, qname)
