"""Ambiguous envelopes are refused (400), never resolved by picking one of two values."""

from __future__ import annotations

import pytest

from sf_metadata.errors import NotAnOutboundMessage
from sf_metadata.soap import parse_outbound_message
from tests.factories import DEMO_ORG_ID, make_notification, make_outbound_message

OTHER_ORG = "00D000000000002EAA"


def _message() -> bytes:
    return make_outbound_message([make_notification(FirstName="Ada")], compact=True)


def test_the_factory_message_parses() -> None:
    assert parse_outbound_message(_message()).notifications[0].fields["FirstName"] == "Ada"


def test_a_second_organization_id_is_refused() -> None:
    data = _message()
    first = f"<OrganizationId>{DEMO_ORG_ID}</OrganizationId>".encode()
    assert first in data
    data = data.replace(first, first + f"<OrganizationId>{OTHER_ORG}</OrganizationId>".encode())
    with pytest.raises(NotAnOutboundMessage, match="repeats OrganizationId"):
        parse_outbound_message(data)


def test_a_repeated_notification_id_is_refused() -> None:
    data = _message()
    start = data.index(b"<Notification><Id>") + len(b"<Notification>")
    end = data.index(b"</Id>", start) + len(b"</Id>")
    data = data[:end] + data[start:end] + data[end:]
    with pytest.raises(NotAnOutboundMessage, match="repeats its Id"):
        parse_outbound_message(data)


def test_a_field_holding_elements_is_refused_not_truncated() -> None:
    data = _message().replace(b">Ada<", b">Ada<sf:b/>Love<")
    with pytest.raises(NotAnOutboundMessage, match="FirstName.*holds elements"):
        parse_outbound_message(data)
