"""Parse Salesforce Outbound Messages and render the Ack and SOAP faults.

Wire format: reference ``outbound-wire-format.md`` sections 1.2 (envelope), 1.3 (values)
and 2.1 (Ack); the Outbound Messaging WSDL
(https://developer.salesforce.com/docs/platform/api/guide/sforce-api-om-outboundmessaging-wsdl.html).
SOAP 1.1 faults: https://www.w3.org/TR/2000/NOTE-SOAP-20000508/#_Toc478383507

Parsing refuses every DTD, entity declaration and external reference before anything
is expanded or fetched: plain UTF-8 input holding no ``<!`` goes in one pass to a
hardened lxml parser; anything else first passes defusedxml's policy in a C expat pass
(see ``sf_metadata._xml``; both paths give the same result). It is namespace-aware (never by prefix, reference bug B11): the ``xsi:type`` QName of
each sObject is resolved against the namespaces in scope, and every field element must be
in ``urn:sobject.enterprise.soap.sforce.com``. Values stay strings (B12). The SessionId is
carried on :class:`~sf_metadata.outbound.OutboundMessage` only and appears in no error.
"""

from __future__ import annotations

from typing import Any, Final

from sf_metadata import _envelope as env
from sf_metadata import _soap_fast, _xml
from sf_metadata._envelope import (
    ENTERPRISE_NS,
    MAX_NOTIFICATIONS,
    OUTBOUND_NS,
    SOAPENV_NS,
    XSI_NS,
)
from sf_metadata.errors import NotAnOutboundMessage, TooManyNotifications
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
    "parse_outbound_message_reference",
    "render_ack",
    "render_fault",
    "try_parse_fast",
]

#: Content-Type of the Ack and of faults (``outbound-wire-format.md`` section 2.1).
ACK_CONTENT_TYPE: Final = "text/xml; charset=utf-8"
#: SOAP 1.1 fault codes: the sender's fault / ours.
FAULT_CLIENT: Final = "soapenv:Client"
FAULT_SERVER: Final = "soapenv:Server"

_text = env.text_of


def parse_outbound_message(data: bytes) -> OutboundMessage:
    """Parse the body of an Outbound Message POST into an :class:`OutboundMessage`.

    ``data`` is the raw request body (UTF-8, optional BOM and XML declaration). Accepts
    15/18-character ids and wrong checksum suffixes (``OrganizationId`` is canonicalised
    to 18 characters; other ids are kept as sent), ``xsi:nil`` (-> None), empty elements
    (-> ``""``), omitted elements (absent), non-ASCII text, predefined entities and
    character references. ``fieldsToNull`` is ignored.

    Plain messages take the one-pass parse (:func:`try_parse_fast`); anything else, and
    every error, goes through :func:`parse_outbound_message_reference`, so the result or
    the error is always the reference parser's. The cost is linear in the body size
    (namespace declarations included: prefixes never copy every ancestor's declarations).

    Raises (all :class:`~sf_metadata.errors.EnvelopeError`):
    :class:`MalformedXml` (not well-formed, truncated, undecodable),
    :class:`ForbiddenXml` (DTD, entity declaration, external reference),
    :class:`NotAnOutboundMessage` (not SOAP 1.1 Envelope > Body > outbound
    ``notifications``; an sObject type or field outside the enterprise namespace; a field
    repeated in one sObject), :class:`MissingOrganizationId` (absent or not a ``00D`` id),
    :class:`TooManyNotifications` (more than 100).
    """
    message = try_parse_fast(data)
    if message is not None:
        return message
    return parse_outbound_message_reference(data)


def try_parse_fast(data: bytes) -> OutboundMessage | None:
    """The one-pass parse: the message of plain, acceptable ``data``, or ``None`` (not
    plain, or any problem: see ``sf_metadata._xml.parse_xml_fast`` and
    ``sf_metadata._soap_fast``). When it returns a message, it equals
    :func:`parse_outbound_message_reference`'s (tests/sf_metadata/test_soap_differential.py).
    Never raises for any ``bytes``; a DTD or entity never reaches lxml here."""
    root = _xml.parse_xml_fast(data)
    if root is None:
        return None
    return _soap_fast.extract(root, data.count(b"nil"))


def parse_outbound_message_reference(data: bytes) -> OutboundMessage:
    """The reference parse: defusedxml's policy in an expat pass, then the hardened lxml
    tree, then a straightforward extraction. Same contract and errors as
    :func:`parse_outbound_message` (which calls it for anything not plain)."""
    root = _xml.parse_xml(data)
    if root.tag != env.ENVELOPE:
        raise NotAnOutboundMessage(
            f"the root element is {_xml.describe(str(root.tag))}, not a SOAP 1.1 Envelope "
            f"({SOAPENV_NS})"
        )
    body = env.first_child(root, env.BODY)
    if body is None:
        raise NotAnOutboundMessage("the SOAP Envelope has no Body")
    notifications = env.first_child(body, env.NOTIFICATIONS)
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
        if tag == env.NOTIFICATION:
            elements.append(child)
        elif tag in header and tag in env.HEADER_TAGS:
            raise NotAnOutboundMessage(f"the notifications element repeats {env.local_name(tag)}")
        else:
            header[tag] = child

    organization_id = env.organization_id(_text(header.get(env.ORGANIZATION_ID)))
    if len(elements) > MAX_NOTIFICATIONS:
        raise TooManyNotifications(
            f"the message holds {len(elements)} notifications; Salesforce sends at most "
            f"{MAX_NOTIFICATIONS}"
        )

    scopes = _xml.NamespaceScopes()
    return OutboundMessage(
        organization_id=organization_id,
        action_id=_text(header.get(env.ACTION_ID)),
        enterprise_url=_text(header.get(env.ENTERPRISE_URL)),
        partner_url=_text(header.get(env.PARTNER_URL)),
        notifications=tuple(_notification(element, scopes) for element in elements),
        session_id=_text(header.get(env.SESSION_ID)),
    )


def _notification(element: Any, scopes: _xml.NamespaceScopes) -> Notification:
    notification_id_el = sobject = None
    for child in element:
        tag = child.tag
        if tag == env.ID:
            if notification_id_el is not None:
                raise NotAnOutboundMessage("a Notification repeats its Id")
            notification_id_el = child
        elif tag == env.SOBJECT:
            if sobject is not None:
                raise NotAnOutboundMessage("a Notification holds more than one sObject")
            sobject = child
    sobject_type: str | None = None
    record_id: str | None = None
    fields: dict[str, str | None] = {}
    if sobject is not None:
        xsi_type = sobject.get(env.XSI_TYPE)
        if xsi_type is not None:
            namespace, sobject_type = scopes.resolve_qname(xsi_type, sobject)
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


def _fields(sobject: Any) -> tuple[str | None, dict[str, str | None]]:
    """(``sf:Id`` text or None, other fields by API name) of one sObject element."""
    fields: dict[str, str | None] = {}
    count = 0
    for el in sobject:
        tag = el.tag
        if not tag.startswith(env.FIELD_PREFIX):
            raise NotAnOutboundMessage(
                f"the sObject field {_xml.describe(str(tag))} is not in the namespace "
                f"{ENTERPRISE_NS}"
            )
        name = tag[env.FIELD_PREFIX_LEN :]
        if name == "fieldsToNull":
            continue
        if len(el):
            raise NotAnOutboundMessage(
                f"the sObject field {_xml.describe(name)} holds elements; the Outbound "
                "Message WSDL types every field as a simple value"
            )
        nil = el.get(env.XSI_NIL)
        fields[name] = None if nil is not None and nil.strip() in env.NIL_TRUE else (el.text or "")
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
