"""The Outbound Message model: what Salesforce POSTs, as typed, immutable objects.

Wire format: reference ``outbound-wire-format.md`` section 1.2 and the Outbound Messaging
WSDL (https://developer.salesforce.com/docs/platform/api/guide/sforce-api-om-outboundmessaging-wsdl.html)::

    soapenv:Envelope (http://schemas.xmlsoap.org/soap/envelope/)
     soapenv:Body
      notifications (http://soap.sforce.com/2005/09/outbound)
       OrganizationId, ActionId, SessionId, EnterpriseUrl, PartnerUrl
       Notification (0..100)
        Id                      notification id (04l...), the dedupe key
        sObject xsi:type="sf:User" (urn:sobject.enterprise.soap.sforce.com)
         sf:Id, sf:<Field>...   only the selected fields; nulls are omitted

Parsing lives in ``sf_metadata.soap`` (``parse_outbound_message``); this module holds only
the model, so the store, the receiver and the coming reconcile run share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Notification", "OutboundMessage"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One ``Notification`` of a message.

    - ``notification_id``: the text of ``Notification/Id`` as sent (04l..., 15 or 18
      characters, suffix not yet checked), or ``None`` when the element is absent.
    - ``sobject_type``: local name of the resolved ``xsi:type`` QName (``"User"``), or
      ``None`` when the sObject has no type.
    - ``record_id``: the text of ``sf:Id`` as sent, or ``None`` when absent.
    - ``fields``: every child of ``sObject`` in the enterprise namespace except ``Id``, by
      API name: the text as sent (``""`` for an empty element) or ``None`` for
      ``xsi:nil="true"``. A field Salesforce left out (a null) is absent from the map.
    """

    notification_id: str | None
    sobject_type: str | None
    record_id: str | None
    fields: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One Outbound Message (one POST).

    ``organization_id`` is the canonical 18-character ``OrganizationId``. ``session_id`` is
    kept out of ``repr`` and must never be logged or stored.
    """

    organization_id: str
    action_id: str | None
    enterprise_url: str | None
    partner_url: str | None
    notifications: tuple[Notification, ...]
    session_id: str | None = field(default=None, repr=False)
