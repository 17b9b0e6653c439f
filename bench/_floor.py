"""The parse floor: notifications per second for parsing and extracting Outbound Messages
in one process, with no HTTP, no store.

Two parsers over the same bytes:

- lxml (``etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)``),
  the fastest safe C tree builder;
- defusedxml (``defusedxml.ElementTree.fromstring`` with ``forbid_dtd=True``), what the
  receiver's parser builds on (docs/architecture.md, ``sf_metadata/soap.py``).

"Extract" is what the receiver needs from the tree: for every ``Notification`` its ``Id``,
the ``xsi:type`` of ``sObject``, ``sf:Id`` and the other ``sf:`` fields as a dict
(the shape of ``sf_metadata.outbound.Notification``). Namespaces: reference
``outbound-wire-format.md`` section 1.2.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import defusedxml.ElementTree as defused_et
from lxml import etree

__all__ = ["FloorResult", "extract", "measure_floor"]

_OUT = "{http://soap.sforce.com/2005/09/outbound}"
_SF = "{urn:sobject.enterprise.soap.sforce.com}"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"

FloorResult = dict[str, float]


def extract(root: Any) -> list[tuple[str | None, str | None, str | None, dict[str, str | None]]]:
    """(notification id, sObject type, record id, fields) per Notification of ``root``.

    ``root`` is the Envelope element of either tree API (lxml or ElementTree).
    """
    body = root.find(_SOAP + "Body")
    notifications = body.find(_OUT + "notifications")
    out = []
    for note in notifications.iterfind(_OUT + "Notification"):
        nid = note.findtext(_OUT + "Id")
        sobject = note.find(_OUT + "sObject")
        fields: dict[str, str | None] = {}
        record_id = None
        for child in sobject:
            tag = child.tag
            if tag.startswith(_SF):
                name = tag[len(_SF) :]
                if name == "Id":
                    record_id = child.text
                else:
                    fields[name] = child.text or ""
        out.append((nid, sobject.get(_XSI_TYPE), record_id, fields))
    return out


def _lxml_parse() -> Callable[[bytes], Any]:
    parser = etree.XMLParser(
        resolve_entities=False, load_dtd=False, no_network=True, dtd_validation=False
    )
    return lambda data: etree.fromstring(data, parser)


def _defused_parse() -> Callable[[bytes], Any]:
    return lambda data: defused_et.fromstring(
        data, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )


def _rate(parse: Callable[[bytes], Any], messages: Sequence[bytes], rounds: int) -> float:
    best = float("inf")
    count = 0
    for _ in range(rounds):
        start = time.process_time()
        count = 0
        for data in messages:
            count += len(extract(parse(data)))
        best = min(best, time.process_time() - start)
    return count / best if best > 0 else float("inf")


def measure_floor(messages: Sequence[bytes], *, rounds: int = 3) -> FloorResult:
    """Notifications per CPU second of this process (best of ``rounds`` passes over
    ``messages``; CPU time, so other load on the machine does not lower the floor) for
    ``{"lxml": ..., "defusedxml": ...}``; also ``"receiver_parser"`` when
    ``sf_metadata.soap.parse_outbound_message`` imports (the project's own parser, which
    also validates ids)."""
    result: FloorResult = {
        "lxml": _rate(_lxml_parse(), messages, rounds),
        "defusedxml": _rate(_defused_parse(), messages, rounds),
    }
    try:
        from sf_metadata.soap import parse_outbound_message
    except ImportError:  # the core parser has not landed yet
        return result
    best = float("inf")
    count = 0
    for _ in range(rounds):
        start = time.process_time()
        count = sum(len(parse_outbound_message(data).notifications) for data in messages)
        best = min(best, time.process_time() - start)
    result["receiver_parser"] = count / best if best > 0 else float("inf")
    return result
