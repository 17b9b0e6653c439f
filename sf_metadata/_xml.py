"""Private XML helpers for ``sf_metadata.soap``: the hardened parses, QName resolution,
text escaping.

The reference parse (:func:`parse_xml`) runs in two passes, both in C:

1. a guard pass with expat (``pyexpat``) applying defusedxml's policy
   (https://github.com/tiran/defusedxml, ``DefusedXMLParser`` with ``forbid_dtd``,
   ``forbid_entities`` and ``forbid_external`` all on): the only Python callbacks are the
   DTD / entity / external-reference handlers, which raise defusedxml's own exceptions
   before anything is expanded. Malformed input fails here too.
2. the tree, with lxml under a parser that resolves no entities, loads no DTD and uses no
   network (a second line of defence), keeping each element's in-scope namespaces
   (``nsmap``), which the ``xsi:type`` QName needs.

Why not ``defusedxml.ElementTree`` itself: it builds the tree through the pure-Python
``XMLParser`` (Python calls per element), several times slower than lxml; see
``tests/sf_metadata/test_soap.py``. ``defusedxml.lxml`` is deprecated.

The one-pass parse (:func:`parse_xml_fast`) skips the expat pass for plain input only: UTF-8
bytes (optional BOM, an optional ``<?xml version="1.0" ...?>`` declaration naming UTF-8)
holding no ``<!`` at all (so no DOCTYPE, DTD, entity declaration, comment or CDATA: a DTD
is refused before libxml2 sees a byte of it), no other ``<?`` (processing instruction),
and no non-ASCII byte inside markup (names are where expat and libxml2 differ). Such
input goes straight to the same hardened lxml parser. Anything else, and any lxml
error, answers ``None`` and the caller uses :func:`parse_xml`, so results and errors are
those of the reference parse (``tests/sf_metadata/test_soap_differential.py``).

Prefixes are resolved with :class:`NamespaceScopes`, which reads each element's own
declarations once per document instead of building every element's in-scope map
(``nsmap`` copies every declaration of every ancestor: 200,000 declarations on the
Envelope times 100 sObjects cost seconds; issue 12 item 6).
"""

from __future__ import annotations

import re
import threading
from typing import Any, NoReturn
from xml.parsers import expat

from defusedxml.common import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from lxml import etree

from sf_metadata.errors import ForbiddenXml, MalformedXml, NotAnOutboundMessage

__all__ = [
    "NamespaceScopes",
    "describe",
    "escape_text",
    "parse_xml",
    "parse_xml_fast",
    "resolve_qname",
]

#: Resolved QName: (namespace URI or "" when none, local name).
QName = tuple[str, str]

_local = threading.local()


def _tree_parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def _doctype(name: str, sysid: str | None, pubid: str | None, _subset: int) -> NoReturn:
    raise DTDForbidden(name, sysid, pubid)


def _entity(
    name: str,
    _is_pe: int,
    value: str | None,
    base: str | None,
    sysid: str | None,
    pubid: str | None,
    _notation: str | None,
) -> NoReturn:
    raise EntitiesForbidden(name, value, base, sysid, pubid, _notation)


def _unparsed(
    name: str, base: str | None, sysid: str | None, pubid: str | None, notation: str | None
) -> NoReturn:
    raise EntitiesForbidden(name, None, base, sysid, pubid, notation)


def _external(context: str, base: str | None, sysid: str | None, pubid: str | None) -> NoReturn:
    raise ExternalReferenceForbidden(context, base, sysid, pubid)


def _guard(data: bytes) -> None:
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _doctype
    parser.EntityDeclHandler = _entity
    parser.UnparsedEntityDeclHandler = _unparsed
    parser.ExternalEntityRefHandler = _external
    try:
        parser.Parse(data, True)
    except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as exc:
        raise ForbiddenXml(
            "the XML holds a DTD, an entity declaration or an external reference "
            f"({type(exc).__name__}); Outbound Messages never do"
        ) from None
    except expat.ExpatError as exc:
        raise MalformedXml(f"the body is not well-formed XML: {exc}") from None
    except (ValueError, LookupError, UnicodeError) as exc:  # unknown encoding and kin
        raise MalformedXml(f"the body cannot be decoded as XML: {str(exc)[:120]}") from None


def parse_xml(data: bytes) -> Any:
    """Parse ``data`` safely; return the lxml root element.

    Raises :class:`ForbiddenXml` (DTD, entity declaration, external reference) or
    :class:`MalformedXml` (not well-formed, truncated, undecodable).
    """
    _guard(data)
    try:
        root = etree.fromstring(data, _tree_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:  # e.g. nesting deeper than 256
        raise MalformedXml(f"the body is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]  # pragma: no cover
        raise ForbiddenXml("the XML holds a DTD; Outbound Messages never do")
    return root


#: The XML declaration the one-pass parse accepts (XML 1.0, UTF-8 or no encoding named).
_DECLARATION = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*([\"'])1\.0\1"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*([\"'])(?i:utf-8)\2)?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*([\"'])(?:yes|no)\3)?"
    rb"[ \t\r\n]*\?>"
)
#: A non-ASCII byte after a ``<`` and before the next ``<`` or ``>`` (in a name, or an
#: attribute value: both leave the one-pass parse).
_NON_ASCII_MARKUP = re.compile(rb"<[^<>]*[\x80-\xff]")
#: A ``>`` inside a quoted attribute value (after it, the check above cannot tell markup
#: from text); text that merely looks like this also leaves the one-pass parse.
_GT_IN_VALUE = re.compile(rb"=[ \t\r\n]*(?:\"[^\"<]*>|'[^'<]*>)")
_BOM = b"\xef\xbb\xbf"


def _plain(data: bytes) -> bool:
    """Whether ``data`` is plain enough for the one-pass parse (module docstring)."""
    start = len(_BOM) if data.startswith(_BOM) else 0
    if data.startswith(b"<?xml", start):
        declaration = _DECLARATION.match(data, start)
        if declaration is None:
            return False
        start = declaration.end()
    elif not data.startswith(b"<", start):
        return False
    if data.find(b"<!", start) != -1 or data.find(b"<?", start) != -1:
        return False
    if data.isascii():
        return True
    return _NON_ASCII_MARKUP.search(data) is None and _GT_IN_VALUE.search(data) is None


def parse_xml_fast(data: bytes) -> Any:
    """The lxml root element of ``data`` in one pass, or ``None`` when ``data`` is not
    plain (module docstring) or lxml refuses it: then call :func:`parse_xml`, which
    refuses DTDs and entities and names the error. Never raises for any ``bytes``."""
    if not _plain(data):
        return None
    try:
        root = etree.fromstring(data, _tree_parser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype:  # pragma: no cover - no "<!" got this far
        return None
    return root


#: Own declarations read from ``iterwalk`` events before an element falls back to its
#: in-scope map: the events cost grows quadratically with one element's own declarations
#: (measured: 40,000 on one element 0.14 s, 200,000 about 3.5 s), the maps linearly with
#: every ancestor's (200,000 on the Envelope: 80 ms per sObject, seconds per message).
_OWN_EVENTS_MAX = 64


class NamespaceScopes:
    """Prefix resolution against the in-scope namespaces of elements of one document.

    Each element's own declarations are read once and kept, so resolving prefixes for
    every sObject costs the number of declarations in the document plus the depth per
    lookup, not declarations x sObjects. ``declarations_read`` counts the declarations read
    so far. An element's own declarations come from ``lxml.etree.iterwalk`` "start-ns"
    events of that element alone (cheap: no ancestor is read); an element that declares
    more than :data:`_OWN_EVENTS_MAX` gets them from its in-scope map minus its parent's
    (linear in both maps).
    """

    def __init__(self) -> None:
        self._own: dict[Any, dict[str | None, str]] = {}
        self.declarations_read = 0

    def _declared_on(self, element: Any) -> dict[str | None, str]:
        own = self._own.get(element)
        if own is None:
            own = _own_declarations(element)
            self.declarations_read += len(own)
            self._own[element] = own
        return own

    def lookup(self, element: Any, prefix: str | None) -> str | None:
        """The namespace URI bound to ``prefix`` (``None``: the default namespace) at
        ``element``, or ``None`` when unbound."""
        node = element
        while node is not None:
            own = self._declared_on(node)
            if prefix in own:
                return own[prefix]
            node = node.getparent()
        return None

    def resolve_qname(self, value: str, element: Any) -> QName:
        """Resolve an ``xsi:type`` value such as ``"sf:User"`` at ``element``; the same
        result as :func:`resolve_qname` with ``element.nsmap``. Raises
        :class:`NotAnOutboundMessage` for an undeclared prefix."""
        value = value.strip()
        prefix, sep, local = value.rpartition(":")
        if not sep:
            return self.lookup(element, None) or "", value
        uri = self.lookup(element, prefix) if prefix else None
        if uri is None:
            raise _undeclared(value, prefix)
        return uri, local


def _own_declarations(element: Any) -> dict[str | None, str]:
    """The namespaces ``element`` itself declares (prefix ``None``: the default one; a
    default undeclared with ``xmlns=""`` reads as ``""``)."""
    own: dict[str | None, str] = {}
    for event, item in etree.iterwalk(element, events=("start-ns", "start")):
        if event == "start":  # the element's own start: its declarations came before
            return own
        if len(own) >= _OWN_EVENTS_MAX:
            break
        prefix, uri = item
        own[prefix or None] = uri
    # Many: what its in-scope map adds to (or changes from) its parent's, one pass each.
    mine: dict[str | None, str] = dict(element.nsmap)
    parent = element.getparent()
    inherited: dict[str | None, str] = dict(parent.nsmap) if parent is not None else {}
    own = {p: uri for p, uri in mine.items() if inherited.get(p) != uri}
    if None in inherited and None not in mine:
        own[None] = ""
    return own


def _undeclared(value: str, prefix: str) -> NotAnOutboundMessage:
    return NotAnOutboundMessage(
        f"the sObject xsi:type {describe(value)} uses the undeclared prefix {prefix!r}"
    )


def resolve_qname(value: str, nsmap: dict[str | None, str]) -> QName:
    """Resolve an ``xsi:type`` value such as ``"sf:User"`` against an element's in-scope
    namespaces (``nsmap``; key ``None`` is the default namespace). Raises
    :class:`NotAnOutboundMessage` for an undeclared prefix."""
    value = value.strip()
    prefix, sep, local = value.rpartition(":")
    if not sep:
        return nsmap.get(None, ""), value
    if prefix not in nsmap:
        raise _undeclared(value, prefix)
    return nsmap[prefix], local


def describe(value: str, limit: int = 80) -> str:
    """``repr`` of a value from the message, shortened for error messages."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def escape_text(value: str) -> str:
    """Escape text for an XML element: ``& < >``; characters XML 1.0 forbids become
    ``U+FFFD``."""
    value = _INVALID_XML_CHARS.sub("\ufffd", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
