"""The fast extraction of ``sf_metadata.soap``: an :class:`OutboundMessage` from the lxml
tree of a well-formed message, or ``None`` for anything unusual (then the reference
extraction runs and names the problem), so the result is always the reference's.

What makes it faster than the reference loop (same tree, same checks): no namespaced
``get`` per field for ``xsi:nil`` (lxml parses the ``{ns}name`` key on every call). When
the bytes hold no ``nil`` beyond the header's, no field can carry ``xsi:nil`` and none is
looked up; otherwise one compiled XPath finds the fields that carry it. Prefixes resolve
through :class:`sf_metadata._xml.NamespaceScopes`.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from sf_metadata import _envelope as env
from sf_metadata import _xml
from sf_metadata.errors import EnvelopeError
from sf_metadata.outbound import Notification, OutboundMessage

__all__ = ["extract"]

_NS = {"o": env.OUTBOUND_NS, "xsi": env.XSI_NS}
#: Relative to ``notifications``: the sObject fields carrying ``xsi:nil``.
_NIL_FIELDS = etree.XPath("o:Notification/o:sObject/*[@xsi:nil]", namespaces=_NS)


def extract(root: Any, nil_count: int) -> OutboundMessage | None:
    """The message of the tree ``root`` (an lxml Envelope element), or ``None`` if the
    reference parser might answer anything else (an error, or a message built from a
    shape this loop does not read). ``nil_count`` is ``data.count(b"nil")`` of the bytes
    parsed (an upper bound on the ``xsi:nil`` attributes). Never raises."""
    if root.tag != env.ENVELOPE:
        return None
    body = env.first_child(root, env.BODY)
    if body is None:
        return None
    notifications = env.first_child(body, env.NOTIFICATIONS)
    if notifications is None:
        return None
    header: dict[str, Any] = {}
    elements: list[Any] = []
    for child in notifications:
        tag = child.tag
        if tag == env.NOTIFICATION:
            elements.append(child)
        elif tag in header and tag in env.HEADER_TAGS:
            return None
        else:
            header[tag] = child
    if len(elements) > env.MAX_NOTIFICATIONS:
        return None
    try:
        organization_id = env.organization_id(env.text_of(header.get(env.ORGANIZATION_ID)))
    except EnvelopeError:
        return None
    nils: dict[Any, str | None] = {}
    header_nils = sum(1 for el in header.values() if el.get(env.XSI_NIL) is not None)
    if nil_count > header_nils:
        nil_fields: Any = _NIL_FIELDS(notifications)
        nils = {el: el.get(env.XSI_NIL) for el in nil_fields}
    scopes = _xml.NamespaceScopes()
    parsed: list[Notification] = []
    for element in elements:
        notification = _notification(element, scopes, nils)
        if notification is None:
            return None
        parsed.append(notification)
    return OutboundMessage(
        organization_id=organization_id,
        action_id=env.text_of(header.get(env.ACTION_ID)),
        enterprise_url=env.text_of(header.get(env.ENTERPRISE_URL)),
        partner_url=env.text_of(header.get(env.PARTNER_URL)),
        notifications=tuple(parsed),
        session_id=env.text_of(header.get(env.SESSION_ID)),
    )


def _notification(
    element: Any, scopes: _xml.NamespaceScopes, nils: dict[Any, str | None]
) -> Notification | None:
    notification_id_el = sobject = None
    for child in element:
        tag = child.tag
        if tag == env.ID:
            if notification_id_el is not None:
                return None
            notification_id_el = child
        elif tag == env.SOBJECT:
            if sobject is not None:
                return None
            sobject = child
    sobject_type: str | None = None
    record_id: str | None = None
    fields: dict[str, str | None] = {}
    if sobject is not None:
        xsi_type = sobject.get(env.XSI_TYPE)
        if xsi_type is not None:
            try:
                namespace, sobject_type = scopes.resolve_qname(xsi_type, sobject)
            except EnvelopeError:
                return None
            if namespace != env.ENTERPRISE_NS:
                return None
        prefix, cut, nil_true = env.FIELD_PREFIX, env.FIELD_PREFIX_LEN, env.NIL_TRUE
        count = 0
        for el in sobject:
            tag = el.tag
            if tag[:cut] != prefix:
                return None
            name = tag[cut:]
            if name == "fieldsToNull":
                continue
            if len(el):
                return None
            nil = nils.get(el) if nils else None
            fields[name] = None if nil is not None and nil.strip() in nil_true else (el.text or "")
            count += 1
        if len(fields) != count:
            return None
        record_id = fields.pop("Id", None)
    return Notification(
        notification_id=env.text_of(notification_id_el),
        sobject_type=sobject_type,
        record_id=record_id,
        fields=fields,
    )
