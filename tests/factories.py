"""Test factories: realistic Salesforce User field values, notifications and Outbound
Messages in the exact wire format (reference ``outbound-wire-format.md`` section 1.2).

Everything here is the project's own synthetic data (no copied samples, no secrets)::

    fields = make_user_fields(IsActive="false", Phone=None)      # None omits the field
    n = make_notification(user_id=sf_id("005", 7), **fields)
    body = make_outbound_message([n], organization_id=DEMO_ORG_ID)   # -> bytes

Ids are generated from a counter with the real case-safe checksum, so they are valid
18-character ids; ``sf_id(prefix, n)`` gives a stable one for a given ``n``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any, Final
from xml.sax.saxutils import escape, quoteattr

from sf_metadata.ids import checksum_suffix

__all__ = [
    "DEMO_ORG_ID",
    "ENTERPRISE_NS",
    "NIL",
    "OMIT",
    "OUTBOUND_NS",
    "SOAPENV_NS",
    "XSD_NS",
    "XSI_NS",
    "make_notification",
    "make_outbound_message",
    "make_user_fields",
    "next_id",
    "sf_id",
]

SOAPENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS: Final = "http://soap.sforce.com/2005/09/outbound"
ENTERPRISE_NS: Final = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS: Final = "http://www.w3.org/2001/XMLSchema"


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: A field value rendered as ``<sf:Field xsi:nil="true"/>`` (the schema allows it).
NIL: Final = _Sentinel("NIL")
#: Pass as ``notification_id`` / ``user_id`` / ``sobject_type`` to leave the element out.
OMIT: Final = _Sentinel("OMIT")

_counter = itertools.count(1)


def sf_id(prefix: str, n: int) -> str:
    """A valid 18-character id: ``prefix`` (3 chars) + ``"Ab"`` + ``n`` as 10 digits + the
    real checksum suffix. Mixed case on purpose, so the suffix is not ``AAA``."""
    if len(prefix) != 3:
        raise ValueError("prefix must be 3 characters")
    id15 = f"{prefix}Ab{n:010d}"
    return id15 + checksum_suffix(id15)


def next_id(prefix: str) -> str:
    """A fresh valid 18-character id with ``prefix`` (global counter)."""
    return sf_id(prefix, next(_counter))


#: The demo organization's Salesforce org id (valid 18-character 00D id).
DEMO_ORG_ID: Final = sf_id("00D", 42)
PROFILE_ID: Final = sf_id("00e", 1)
USER_ROLE_ID: Final = sf_id("00E", 1)
CALL_CENTER_ID: Final = sf_id("04v", 1)
SYSTEM_MODSTAMP: Final = "2026-11-20T10:00:00.000Z"


def make_user_fields(**overrides: Any) -> dict[str, Any]:
    """Realistic field values of an active User with a call center (all text, as sent).

    ``overrides`` replace or add fields (custom fields ``Foo__c`` too); an override value of
    ``None`` omits the field, as Salesforce omits nulls. ``NIL`` renders ``xsi:nil``.
    ``Username`` / ``Email`` are unique per call unless overridden.
    """
    n = next(_counter)
    fields: dict[str, Any] = {
        "CallCenterId": CALL_CENTER_ID,
        "Email": f"jane.agent{n}@acme.com",
        "FirstName": "Jane",
        "IsActive": "true",
        "LanguageLocaleKey": "en_US",
        "LastModifiedDate": SYSTEM_MODSTAMP,
        "LastName": f"Agent{n}",
        "MobilePhone": "+1 415 555 0101",
        "Name": f"Jane Agent{n}",
        "Phone": "+1 415 555 0199",
        "ProfileId": PROFILE_ID,
        "SmallPhotoUrl": "https://acme.file.force.com/profilephoto/005/T",
        "SystemModstamp": SYSTEM_MODSTAMP,
        "UserRoleId": USER_ROLE_ID,
        "UserType": "Standard",
        "Username": f"jane.agent{n}@acme.com",
    }
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


def make_notification(
    user_id: Any = None,
    notification_id: Any = None,
    sobject_type: Any = "User",
    **fields: Any,
) -> dict[str, Any]:
    """One notification as a plain dict::

        {"notification_id": str | OMIT, "sobject_type": str | OMIT,
         "record_id": str | OMIT, "fields": {name: str | NIL}}

    ``user_id`` (the ``sf:Id``) and ``notification_id`` default to fresh valid ids (005 /
    04l); ``OMIT`` leaves the element out. For ``sobject_type="User"`` the fields are
    ``make_user_fields(**fields)``; for other types, exactly ``fields`` (None values dropped).
    """
    if sobject_type == "User":
        values = make_user_fields(**fields)
    else:
        values = {k: v for k, v in fields.items() if v is not None}
    return {
        "notification_id": next_id("04l") if notification_id is None else notification_id,
        "sobject_type": sobject_type,
        "record_id": next_id("005") if user_id is None else user_id,
        "fields": values,
    }


def _render_field(sf: str, xsi: str, name: str, value: Any) -> str:
    tag = f"{sf}:{name}" if sf else name
    if value is NIL:
        return f'<{tag} {xsi}:nil="true"/>'
    return f"<{tag}>{escape(str(value))}</{tag}>"


def make_outbound_message(
    notifications: Iterable[Mapping[str, Any]] = (),
    organization_id: str | _Sentinel = DEMO_ORG_ID,
    session_id: str | None = None,
    action_id: str | None = None,
    bom: bool = False,
    declaration: bool = True,
    compact: bool = False,
    prefixes: Mapping[str, str] | None = None,
    *,
    sf_namespace: str = ENTERPRISE_NS,
    instance_url: str = "https://acme.my.salesforce.com",
    api_version: str = "60.0",
) -> bytes:
    """An Outbound Message in the exact wire format of ``outbound-wire-format.md`` 1.2.

    ``organization_id=OMIT``-like behaviour: pass ``organization_id=""`` for an empty
    element; use the sentinel ``OMIT`` to leave ``OrganizationId`` out. ``session_id=None``
    renders ``<SessionId xsi:nil="true"/>``. ``EnterpriseUrl``/``PartnerUrl`` end in the
    15-character org id. ``prefixes`` re-prefixes namespaces: keys ``soapenv``, ``xsi``,
    ``xsd``, ``outbound`` (``""`` = default namespace, the real form) and ``sf``.
    ``sf_namespace`` changes the URI bound to the ``sf`` prefix (reference bug B11).
    ``compact`` drops all whitespace between tags; ``bom`` prepends a UTF-8 BOM;
    ``declaration=False`` drops ``<?xml ...?>``. Text is XML-escaped; the result is UTF-8.
    """
    p = {"soapenv": "soapenv", "xsi": "xsi", "xsd": "xsd", "outbound": "", "sf": "sf"}
    if prefixes:
        p.update(prefixes)
    env, xsi, xsd, out, sf = p["soapenv"], p["xsi"], p["xsd"], p["outbound"], p["sf"]
    nl = "" if compact else "\n"

    def ind(level: int) -> str:
        return "" if compact else " " * level

    def o(name: str) -> str:
        return f"{out}:{name}" if out else name

    out_decl = f"xmlns:{out}" if out else "xmlns"
    sf_decl = f"xmlns:{sf}" if sf else "xmlns"
    action = action_id if action_id is not None else sf_id("04k", 1)
    org15 = organization_id[:15] if isinstance(organization_id, str) else ""

    lines: list[str] = []
    if declaration:
        lines.append('<?xml version="1.0" encoding="UTF-8"?>')
    lines.append(
        f"<{env}:Envelope xmlns:{env}={quoteattr(SOAPENV_NS)} "
        f"xmlns:{xsd}={quoteattr(XSD_NS)} xmlns:{xsi}={quoteattr(XSI_NS)}>"
    )
    lines.append(f"{ind(1)}<{env}:Body>")
    lines.append(f"{ind(2)}<{o('notifications')} {out_decl}={quoteattr(OUTBOUND_NS)}>")
    if isinstance(organization_id, str):
        lines.append(
            f"{ind(3)}<{o('OrganizationId')}>{escape(organization_id)}</{o('OrganizationId')}>"
        )
    lines.append(f"{ind(3)}<{o('ActionId')}>{escape(action)}</{o('ActionId')}>")
    if session_id is None:
        lines.append(f'{ind(3)}<{o("SessionId")} {xsi}:nil="true"/>')
    else:
        lines.append(f"{ind(3)}<{o('SessionId')}>{escape(session_id)}</{o('SessionId')}>")
    for kind, letter in (("EnterpriseUrl", "c"), ("PartnerUrl", "u")):
        url = f"{instance_url}/services/Soap/{letter}/{api_version}/{org15}"
        lines.append(f"{ind(3)}<{o(kind)}>{escape(url)}</{o(kind)}>")
    for n in notifications:
        lines.append(f"{ind(3)}<{o('Notification')}>")
        nid = n.get("notification_id", OMIT)
        if nid is not OMIT:
            lines.append(f"{ind(4)}<{o('Id')}>{escape(str(nid))}</{o('Id')}>")
        stype = n.get("sobject_type", OMIT)
        qname = f"{sf}:{stype}" if sf else str(stype)
        type_attr = "" if stype is OMIT else f" {xsi}:type={quoteattr(qname)}"
        lines.append(f"{ind(4)}<{o('sObject')}{type_attr} {sf_decl}={quoteattr(sf_namespace)}>")
        rid = n.get("record_id", OMIT)
        if rid is not OMIT:
            lines.append(f"{ind(5)}{_render_field(sf, xsi, 'Id', rid)}")
        fields: Mapping[str, Any] = n.get("fields", {})
        for name in sorted(fields):
            if fields[name] is None:
                continue
            lines.append(f"{ind(5)}{_render_field(sf, xsi, name, fields[name])}")
        lines.append(f"{ind(4)}</{o('sObject')}>")
        lines.append(f"{ind(3)}</{o('Notification')}>")
    lines.append(f"{ind(2)}</{o('notifications')}>")
    lines.append(f"{ind(1)}</{env}:Body>")
    lines.append(f"</{env}:Envelope>")
    data = nl.join(lines).encode("utf-8")
    return b"\xef\xbb\xbf" + data if bom else data
