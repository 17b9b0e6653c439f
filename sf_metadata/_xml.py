"""Private XML helpers for ``sf_metadata.soap``: the hardened parse, QName resolution,
text escaping.

The parse runs in two passes, both in C:

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
"""

from __future__ import annotations

import re
import threading
from typing import Any, NoReturn
from xml.parsers import expat

from defusedxml.common import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from lxml import etree

from sf_metadata.errors import ForbiddenXml, MalformedXml, NotAnOutboundMessage

__all__ = ["describe", "escape_text", "parse_xml", "resolve_qname"]

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


def resolve_qname(value: str, nsmap: dict[str | None, str]) -> QName:
    """Resolve an ``xsi:type`` value such as ``"sf:User"`` against an element's in-scope
    namespaces (``nsmap``; key ``None`` is the default namespace). Raises
    :class:`NotAnOutboundMessage` for an undeclared prefix."""
    value = value.strip()
    prefix, sep, local = value.rpartition(":")
    if not sep:
        return nsmap.get(None, ""), value
    if prefix not in nsmap:
        raise NotAnOutboundMessage(
            f"the sObject xsi:type {describe(value)} uses the undeclared prefix {prefix!r}"
        )
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
