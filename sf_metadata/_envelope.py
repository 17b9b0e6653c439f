"""Names and small readers shared by the two Outbound Message parsers of
``sf_metadata.soap`` (the reference extraction there and the fast one in
``sf_metadata._soap_fast``).

Wire format: reference ``outbound-wire-format.md`` sections 1.2 (envelope) and 1.3
(values); the Outbound Messaging WSDL
(https://developer.salesforce.com/docs/platform/api/guide/sforce-api-om-outboundmessaging-wsdl.html).
"""

from __future__ import annotations

from typing import Any, Final

from sf_metadata import _xml
from sf_metadata.errors import InvalidSalesforceId, MissingOrganizationId
from sf_metadata.ids import ORGANIZATION, canonical_id

__all__ = [
    "ENTERPRISE_NS",
    "MAX_NOTIFICATIONS",
    "OUTBOUND_NS",
    "SOAPENV_NS",
    "XSI_NS",
    "first_child",
    "local_name",
    "organization_id",
    "text_of",
]

SOAPENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS: Final = "http://soap.sforce.com/2005/09/outbound"
ENTERPRISE_NS: Final = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

#: WSDL ``Notification maxOccurs="100"``; docs "up to 100 notifications".
MAX_NOTIFICATIONS: Final = 100

ENVELOPE = f"{{{SOAPENV_NS}}}Envelope"
BODY = f"{{{SOAPENV_NS}}}Body"
NOTIFICATIONS = f"{{{OUTBOUND_NS}}}notifications"
NOTIFICATION = f"{{{OUTBOUND_NS}}}Notification"
ORGANIZATION_ID = f"{{{OUTBOUND_NS}}}OrganizationId"
ACTION_ID = f"{{{OUTBOUND_NS}}}ActionId"
SESSION_ID = f"{{{OUTBOUND_NS}}}SessionId"
ENTERPRISE_URL = f"{{{OUTBOUND_NS}}}EnterpriseUrl"
PARTNER_URL = f"{{{OUTBOUND_NS}}}PartnerUrl"
ID = f"{{{OUTBOUND_NS}}}Id"
HEADER_TAGS = frozenset({ORGANIZATION_ID, ACTION_ID, SESSION_ID, ENTERPRISE_URL, PARTNER_URL})
SOBJECT = f"{{{OUTBOUND_NS}}}sObject"
XSI_TYPE = f"{{{XSI_NS}}}type"
XSI_NIL = f"{{{XSI_NS}}}nil"
FIELD_PREFIX = f"{{{ENTERPRISE_NS}}}"
FIELD_PREFIX_LEN = len(FIELD_PREFIX)
NIL_TRUE = frozenset({"true", "1"})


def text_of(el: Any) -> str | None:
    """Element text: None if absent or ``xsi:nil="true"``, ``""`` if empty."""
    if el is None:
        return None
    nil = el.get(XSI_NIL)
    if nil is not None and nil.strip() in NIL_TRUE:
        return None
    return el.text or ""


def local_name(tag: str) -> str:
    """``"{ns}Name"`` -> ``"Name"``."""
    return tag.rpartition("}")[2]


def first_child(parent: Any, tag: str) -> Any:
    """The first child element of ``parent`` with ``tag`` (Clark notation), or None."""
    for child in parent:
        if child.tag == tag:
            return child
    return None


def organization_id(value: str | None) -> str:
    """The ``OrganizationId`` text canonicalised to 18 characters.

    Raises :class:`MissingOrganizationId` when absent, blank or not a ``00D`` id."""
    if value is None or not value.strip():
        raise MissingOrganizationId("the message has no OrganizationId")
    try:
        return canonical_id(value.strip(), ORGANIZATION)
    except InvalidSalesforceId:
        raise MissingOrganizationId(
            f"OrganizationId {_xml.describe(value)} is not a Salesforce organization id "
            "(15 or 18 letters and digits starting with 00D)"
        ) from None
