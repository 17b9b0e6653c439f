"""Parse Salesforce Outbound Messages and render the Ack and SOAP faults.

Wire format: reference ``outbound-wire-format.md`` sections 1.2 (envelope), 1.3 (values)
and 2.1 (Ack); the Outbound Messaging WSDL
(https://developer.salesforce.com/docs/platform/api/guide/sforce-api-om-outboundmessaging-wsdl.html).
SOAP 1.1 faults: https://www.w3.org/TR/2000/NOTE-SOAP-20000508/#_Toc478383507

Parsing applies defusedxml's policy (no DTD, no entity declarations, no external
references) in a C expat pass, then builds the tree with a hardened lxml parser (see
``sf_metadata._xml``). It is namespace-aware (never by prefix, reference bug B11): the ``xsi:type`` QName of
each sObject is resolved against the namespaces in scope, and every field element must be
in ``urn:sobject.enterprise.soap.sforce.com``. Values stay strings (B12). The SessionId is
carried on :class:`~sf_metadata.outbound.OutboundMessage` only and appears in no error.
"""

from __future__ import annotations

from typing import Any, Final

from sf_metadata import _xml
from sf_metadata.errors import (
    InvalidSalesforceId,
    MissingOrganizationId,
    NotAnOutboundMessage,
    TooManyNotifications,
)
from sf_metadata.ids import ORGANIZATION, canonical_id
from sf_metadata.outbound import Notification, OutboundMessage

__all__ = [
    "ACK_CONTENT_TYPE",
    "ENTERPRISE_NS",
    "FAULT_CLIENT",
    "FAULT_SERVER",
    "MAX_NOTIFICATIONS",
    "OUTBOUND_NS",
    "SOAPENV_NS",
    "XSI_NS",
    "parse_outbound_message",
    "render_ack",
    "render_fault",
]

SOAPENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS: Final = "http://soap.sforce.com/2005/09/outbound"
ENTERPRISE_NS: Final = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

#: WSDL ``Notification maxOccurs="100"``; docs "up to 100 notifications".
MAX_NOTIFICATIONS: Final = 100
#: Content-Type of the Ack and of faults (``outbound-wire-format.md`` section 2.1).
ACK_CONTENT_TYPE: Final = "text/xml; charset=utf-8"
#: SOAP 1.1 fault codes: the sender's fault / ours.
FAULT_CLIENT: Final = "soapenv:Client"
FAULT_SERVER: Final = "soapenv:Server"

_ENVELOPE = f"{{{SOAPENV_NS}}}Envelope"
_BODY = f"{{{SOAPENV_NS}}}Body"
_NOTIFICATIONS = f"{{{OUTBOUND_NS}}}notifications"
_NOTIFICATION = f"{{{OUTBOUND_NS}}}Notification"
_ORGANIZATION_ID = f"{{{OUTBOUND_NS}}}OrganizationId"
_ACTION_ID = f"{{{OUTBOUND_NS}}}ActionId"
_SESSION_ID = f"{{{OUTBOUND_NS}}}SessionId"
_ENTERPRISE_URL = f"{{{OUTBOUND_NS}}}EnterpriseUrl"
_PARTNER_URL = f"{{{OUTBOUND_NS}}}PartnerUrl"
_ID = f"{{{OUTBOUND_NS}}}Id"
_HEADER_TAGS = frozenset({_ORGANIZATION_ID, _ACTION_ID, _SESSION_ID, _ENTERPRISE_URL, _PARTNER_URL})
_SOBJECT = f"{{{OUTBOUND_NS}}}sObject"
_XSI_TYPE = f"{{{XSI_NS}}}type"
_XSI_NIL = f"{{{XSI_NS}}}nil"
_FIELD_PREFIX = f"{{{ENTERPRISE_NS}}}"
_FIELD_PREFIX_LEN = len(_FIELD_PREFIX)
_NIL_TRUE = frozenset({"true", "1"})


def _text(el: Any) -> str | None:
    """Element text: None if absent or ``xsi:nil="true"``, ``""`` if empty."""
    if el is None:
        return None
    nil = el.get(_XSI_NIL)
    if nil is not None and nil.strip() in _NIL_TRUE:
        return None
    return el.text or ""


def parse_outbound_message(data: bytes) -> OutboundMessage:
    """Parse the body of an Outbound Message POST into an :class:`OutboundMessage`.

    ``data`` is the raw request body (UTF-8, optional BOM and XML declaration). Accepts
    15/18-character ids and wrong checksum suffixes (``OrganizationId`` is canonicalised
    to 18 characters; other ids are kept as sent), ``xsi:nil`` (-> None), empty elements
    (-> ``""``), omitted elements (absent), non-ASCII text, predefined entities and
    character references. ``fieldsToNull`` is ignored.

    Raises (all :class:`~sf_metadata.errors.EnvelopeError`):
    :class:`MalformedXml` (not well-formed, truncated, undecodable),
    :class:`ForbiddenXml` (DTD, entity declaration, external reference),
    :class:`NotAnOutboundMessage` (not SOAP 1.1 Envelope > Body > outbound
    ``notifications``; an sObject type or field outside the enterprise namespace; a field
    repeated in one sObject), :class:`MissingOrganizationId` (absent or not a ``00D`` id),
    :class:`TooManyNotifications` (more than 100).
    """
    root = _xml.parse_xml(data)
    if root.tag != _ENVELOPE:
        raise NotAnOutboundMessage(
            f"the root element is {_xml.describe(str(root.tag))}, not a SOAP 1.1 Envelope "
            f"({SOAPENV_NS})"
        )
    body = _first(root, _BODY)
    if body is None:
        raise NotAnOutboundMessage("the SOAP Envelope has no Body")
    notifications = _first(body, _NOTIFICATIONS)
    if notifications is None:
        first = str(body[0].tag) if len(body) else "nothing"
        raise NotAnOutboundMessage(
            f"the SOAP Body holds {_xml.describe(first)}, not {{{OUTBOUND_NS}}}notifications"
        )

    # One pass over the children (lxml's find() compiles a path on every call).
    header: dict[str, Any] = {}
    elements: list[Any] = []
    for child in notifications:
        tag = child.tag
        if tag == _NOTIFICATION:
            elements.append(child)
        elif tag in header and tag in _HEADER_TAGS:
            raise NotAnOutboundMessage(f"the notifications element repeats {_local(tag)}")
        else:
            header[tag] = child

    organization_id = _organization_id(_text(header.get(_ORGANIZATION_ID)))
    if len(elements) > MAX_NOTIFICATIONS:
        raise TooManyNotifications(
            f"the message holds {len(elements)} notifications; Salesforce sends at most "
            f"{MAX_NOTIFICATIONS}"
        )

    return OutboundMessage(
        organization_id=organization_id,
        action_id=_text(header.get(_ACTION_ID)),
        enterprise_url=_text(header.get(_ENTERPRISE_URL)),
        partner_url=_text(header.get(_PARTNER_URL)),
        notifications=tuple(_notification(element) for element in elements),
        session_id=_text(header.get(_SESSION_ID)),
    )


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _first(parent: Any, tag: str) -> Any:
    for child in parent:
        if child.tag == tag:
            return child
    return None


def _notification(element: Any) -> Notification:
    notification_id_el = sobject = None
    for child in element:
        tag = child.tag
        if tag == _ID:
            if notification_id_el is not None:
                raise NotAnOutboundMessage("a Notification repeats its Id")
            notification_id_el = child
        elif tag == _SOBJECT:
            if sobject is not None:
                raise NotAnOutboundMessage("a Notification holds more than one sObject")
            sobject = child
    sobject_type: str | None = None
    record_id: str | None = None
    fields: dict[str, str | None] = {}
    if sobject is not None:
        xsi_type = sobject.get(_XSI_TYPE)
        if xsi_type is not None:
            namespace, sobject_type = _xml.resolve_qname(xsi_type, sobject.nsmap)
            if namespace != ENTERPRISE_NS:
                raise NotAnOutboundMessage(
                    f"the sObject type {_xml.describe(xsi_type)} resolves to namespace "
                    f"{_xml.describe(namespace)}, not {ENTERPRISE_NS}"
                )
        record_id, fields = _fields(sobject)
    return Notification(
        notification_id=_text(notification_id_el),
        sobject_type=sobject_type,
        record_id=record_id,
        fields=fields,
    )


def _organization_id(value: str | None) -> str:
    if value is None or not value.strip():
        raise MissingOrganizationId("the message has no OrganizationId")
    try:
        return canonical_id(value.strip(), ORGANIZATION)
    except InvalidSalesforceId:
        raise MissingOrganizationId(
            f"OrganizationId {_xml.describe(value)} is not a Salesforce organization id "
            "(15 or 18 letters and digits starting with 00D)"
        ) from None


def _fields(sobject: Any) -> tuple[str | None, dict[str, str | None]]:
    """(``sf:Id`` text or None, other fields by API name) of one sObject element."""
    fields: dict[str, str | None] = {}
    count = 0
    for el in sobject:
        tag = el.tag
        if not tag.startswith(_FIELD_PREFIX):
            raise NotAnOutboundMessage(
                f"the sObject field {_xml.describe(str(tag))} is not in the namespace "
                f"{ENTERPRISE_NS}"
            )
        name = tag[_FIELD_PREFIX_LEN:]
        if name == "fieldsToNull":
            continue
        if len(el):
            raise NotAnOutboundMessage(
                f"the sObject field {_xml.describe(name)} holds elements; the Outbound "
                "Message WSDL types every field as a simple value"
            )
        nil = el.get(_XSI_NIL)
        fields[name] = None if nil is not None and nil.strip() in _NIL_TRUE else (el.text or "")
        count += 1
    if len(fields) != count:
        raise NotAnOutboundMessage("an sObject repeats a field element")
    record_id = fields.pop("Id", None)
    return record_id, fields


_ACK: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
    b" <soapenv:Body>\n"
    b'  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
    b"   <Ack>true</Ack>\n"
    b"  </notificationsResponse>\n"
    b" </soapenv:Body>\n"
    b"</soapenv:Envelope>\n"
)


def render_ack() -> bytes:
    """The Ack body of ``outbound-wire-format.md`` section 2.1 (``notificationsResponse`` /
    ``Ack`` true in the outbound namespace), UTF-8 with declaration. Serve it with HTTP 200
    and :data:`ACK_CONTENT_TYPE`."""
    return _ACK


_FAULT_CODES = frozenset({"VersionMismatch", "MustUnderstand", "Client", "Server"})


def render_fault(faultcode: str, faultstring: str) -> bytes:
    """A SOAP 1.1 Fault envelope (UTF-8 with declaration).

    ``faultcode`` is a SOAP 1.1 code, qualified (``"soapenv:Client"``) or bare
    (``"Client"``); dotted sub-codes (``"Client.Authentication"``) are kept. An unknown
    code becomes ``soapenv:Server``. ``faultstring`` is one human line; it is XML-escaped
    and characters XML forbids are replaced. Never put secrets in it.
    """
    local = (
        faultcode.rpartition(":")[2]
        if faultcode.startswith("soapenv:") or ":" not in (faultcode)
        else ""
    )
    base = local.split(".", 1)[0]
    valid = base in _FAULT_CODES and all(
        part and part.replace("_", "").replace("-", "").isalnum() and part.isascii()
        for part in local.split(".")
    )
    code = f"soapenv:{local}" if valid else FAULT_SERVER
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAPENV_NS}">\n'
        " <soapenv:Body>\n"
        "  <soapenv:Fault>\n"
        f"   <faultcode>{code}</faultcode>\n"
        f"   <faultstring>{_xml.escape_text(faultstring)}</faultstring>\n"
        "  </soapenv:Fault>\n"
        " </soapenv:Body>\n"
        "</soapenv:Envelope>\n"
    ).encode()
