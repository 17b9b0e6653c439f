from __future__ import annotations

import pytest
from defusedxml.ElementTree import fromstring

from sf_metadata.errors import (
    ForbiddenXml,
    MalformedXml,
    MissingOrganizationId,
    NotAnOutboundMessage,
    TooManyNotifications,
)
from sf_metadata.ids import to_18
from sf_metadata.soap import (
    ACK_CONTENT_TYPE,
    OUTBOUND_NS,
    SOAPENV_NS,
    parse_outbound_message,
    render_ack,
    render_fault,
)
from tests.factories import (
    DEMO_ORG_ID,
    NIL,
    OMIT,
    make_notification,
    make_outbound_message,
    sf_id,
)

SECRET_SESSION = "00DAb0000000042!AQoAQSecretSessionValue"


def one(**fields: object) -> bytes:
    return make_outbound_message([make_notification(**fields)])


def test_parses_a_real_shaped_message() -> None:
    n = make_notification(
        user_id=sf_id("005", 1), notification_id=sf_id("04l", 1), Name="Jürgen Søn & Co", Phone=None
    )
    msg = parse_outbound_message(make_outbound_message([n], action_id=sf_id("04k", 7)))
    assert msg.organization_id == DEMO_ORG_ID
    assert msg.action_id == sf_id("04k", 7)
    assert msg.session_id is None
    assert msg.enterprise_url is not None and msg.enterprise_url.endswith(DEMO_ORG_ID[:15])
    assert msg.partner_url is not None and "/Soap/u/" in msg.partner_url
    (parsed,) = msg.notifications
    assert parsed.notification_id == sf_id("04l", 1)
    assert parsed.sobject_type == "User"
    assert parsed.record_id == sf_id("005", 1)
    assert dict(parsed.fields) == n["fields"]
    assert parsed.fields["Name"] == "Jürgen Søn & Co"
    assert "Phone" not in parsed.fields


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bom": True},
        {"declaration": False},
        {"compact": True},
        {"bom": True, "declaration": False, "compact": True},
        {"prefixes": {"soapenv": "s", "outbound": "out", "sf": "q", "xsi": "i"}},
        {"prefixes": {"soapenv": "SOAP-ENV", "outbound": "ns1", "sf": "ns2"}},
    ],
)
def test_accepts_wire_variants(kwargs: dict[str, object]) -> None:
    n = make_notification(user_id=sf_id("005", 2), notification_id=sf_id("04l", 2))
    msg = parse_outbound_message(make_outbound_message([n], **kwargs))  # type: ignore[arg-type]
    assert msg.organization_id == DEMO_ORG_ID
    assert msg.notifications[0].record_id == sf_id("005", 2)
    assert msg.notifications[0].sobject_type == "User"
    assert dict(msg.notifications[0].fields) == n["fields"]


def test_default_namespace_for_fields_is_accepted() -> None:
    body = make_outbound_message([make_notification()], prefixes={"outbound": "out", "sf": ""})
    assert b'<out:sObject xsi:type="User" xmlns="urn:sobject' in body
    n = parse_outbound_message(body).notifications[0]
    assert n.sobject_type == "User"
    assert n.fields["IsActive"] == "true"


def test_unprefixed_type_in_the_outbound_default_namespace_is_rejected() -> None:
    body = one().replace(b'xsi:type="sf:User"', b'xsi:type="User"')
    with pytest.raises(NotAnOutboundMessage, match="sObject type"):
        parse_outbound_message(body)


def test_15_char_ids_and_wrong_suffixes_are_accepted() -> None:
    body = make_outbound_message(
        [make_notification(user_id="005xx000001Sv6e", notification_id="04lxx00000000aaZZZ")],
        organization_id="00Dxx0000001gPF",
    )
    msg = parse_outbound_message(body)
    assert msg.organization_id == to_18("00Dxx0000001gPF")
    assert msg.notifications[0].record_id == "005xx000001Sv6e"
    assert msg.notifications[0].notification_id == "04lxx00000000aaZZZ"
    wrong = parse_outbound_message(make_outbound_message([], organization_id="00Dxx0000001gPFZZZ"))
    assert wrong.organization_id == to_18("00Dxx0000001gPF")


def test_nil_empty_and_omitted_values() -> None:
    msg = parse_outbound_message(one(Phone=NIL, MobilePhone="", Title__c=None))
    fields = msg.notifications[0].fields
    assert fields["Phone"] is None
    assert fields["MobilePhone"] == ""
    assert "Title__c" not in fields


def test_values_stay_strings_with_entities_and_char_refs() -> None:
    body = one(EmployeeNumber__c="00123").replace(
        b"<sf:FirstName>Jane</sf:FirstName>",
        b"<sf:FirstName>J&#252;rgen &amp; &lt;Co&gt;</sf:FirstName>",
    )
    fields = parse_outbound_message(body).notifications[0].fields
    assert fields["EmployeeNumber__c"] == "00123"
    assert fields["FirstName"] == "Jürgen & <Co>"


def test_empty_notifications_and_notification_without_data() -> None:
    assert parse_outbound_message(make_outbound_message([])).notifications == ()
    msg = parse_outbound_message(
        make_outbound_message(
            [
                {
                    "notification_id": sf_id("04l", 3),
                    "sobject_type": "User",
                    "record_id": OMIT,
                    "fields": {},
                }
            ]
        )
    )
    n = msg.notifications[0]
    assert (n.record_id, dict(n.fields), n.sobject_type) == (None, {}, "User")


def test_missing_notification_id_and_untyped_sobject() -> None:
    body = make_outbound_message(
        [make_notification(notification_id=OMIT, sobject_type=OMIT, LastName="x")]
    )
    n = parse_outbound_message(body).notifications[0]
    assert n.notification_id is None
    assert n.sobject_type is None


def test_fields_to_null_is_ignored() -> None:
    body = one().replace(b"<sf:UserType>", b"<sf:fieldsToNull>Phone</sf:fieldsToNull><sf:UserType>")
    assert "fieldsToNull" not in parse_outbound_message(body).notifications[0].fields


def test_non_user_sobject_type_is_reported() -> None:
    body = make_outbound_message([make_notification(sobject_type="Contact", LastName="Doe")])
    assert parse_outbound_message(body).notifications[0].sobject_type == "Contact"


def test_session_id_is_kept_but_never_in_repr() -> None:
    msg = parse_outbound_message(make_outbound_message([], session_id=SECRET_SESSION))
    assert msg.session_id == SECRET_SESSION
    assert SECRET_SESSION not in repr(msg)
    assert "Secret" not in str(msg)


ENVELOPE_WITH_OUTBOUND_SF = b'<soapenv:Envelope xmlns:sf="http://soap.sforce.com/2005/09/outbound" '


def test_prefix_rebound_to_different_namespaces_resolves_by_scope() -> None:
    # The "sf" prefix means the outbound namespace on the envelope and the enterprise
    # namespace on each sObject: resolution must use the innermost declaration.
    body = one().replace(b"<soapenv:Envelope ", ENVELOPE_WITH_OUTBOUND_SF)
    assert parse_outbound_message(body).notifications[0].sobject_type == "User"
    bad = (
        make_outbound_message([make_notification()])
        .replace(b' xmlns:sf="urn:sobject.enterprise.soap.sforce.com">', b">")
        .replace(b"<sf:", b"<sf2:")
        .replace(b"</sf:", b"</sf2:")
        .replace(b"<sObject ", b'<sObject xmlns:sf2="urn:sobject.enterprise.soap.sforce.com" ')
        .replace(b"<soapenv:Envelope ", ENVELOPE_WITH_OUTBOUND_SF)
    )
    with pytest.raises(NotAnOutboundMessage, match="sObject type"):
        parse_outbound_message(bad)


# --- bad input -------------------------------------------------------------------------


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
<soapenv:Body>&lol2;</soapenv:Body></soapenv:Envelope>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
<soapenv:Body>&xxe;</soapenv:Body></soapenv:Envelope>"""
DTD_ONLY = b"""<?xml version="1.0"?>
<!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1/x.dtd">
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL, DTD_ONLY])
def test_dtd_and_entities_are_forbidden(body: bytes) -> None:
    with pytest.raises(ForbiddenXml, match="DTD"):
        parse_outbound_message(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        one()[:-20],
        b"\xff\xfe\x00junk",
        one().replace(b"Jane", b"J\xffne"),
        one() + b"<extra/>",
        b"<a>&undefined;</a>",
    ],
)
def test_malformed_xml(body: bytes) -> None:
    with pytest.raises(MalformedXml):
        parse_outbound_message(body)


def test_unknown_encoding_and_excessive_depth_are_malformed() -> None:
    with pytest.raises(MalformedXml, match="bogus"):
        parse_outbound_message(one().replace(b'encoding="UTF-8"', b'encoding="bogus"'))
    with pytest.raises(MalformedXml, match="depth"):
        parse_outbound_message(b"<a>" * 300 + b"</a>" * 300)


@pytest.mark.parametrize("encoding", ["ISO-8859-1", "UTF-16"])
def test_declared_encodings_are_honoured(encoding: str) -> None:
    text = one(Name="Jürgen Søn").decode().replace('encoding="UTF-8"', f'encoding="{encoding}"')
    msg = parse_outbound_message(text.encode(encoding.lower().replace("iso-8859-1", "latin-1")))
    assert msg.notifications[0].fields["Name"] == "Jürgen Søn"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html><body>hi</body></html>", "root element"),
        (
            one().replace(SOAPENV_NS.encode(), b"http://www.w3.org/2003/05/soap-envelope"),
            "root element",
        ),
        (one().replace(b"soapenv:Body", b"soapenv:Bod"), "no Body"),
        (one().replace(OUTBOUND_NS.encode(), b"http://example.com/other"), "notifications"),
        (
            b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soapenv:Body/></soapenv:Envelope>",
            "holds 'nothing'",
        ),
        (
            one().replace(
                b"urn:sobject.enterprise.soap.sforce.com", b"urn:sobject.partner.soap.sforce.com"
            ),
            "namespace",
        ),
    ],
)
def test_not_an_outbound_message(body: bytes, match: str) -> None:
    with pytest.raises(NotAnOutboundMessage, match=match):
        parse_outbound_message(body)


def test_field_in_wrong_namespace_rejects_message() -> None:
    body = (
        one()
        .replace(b"<sf:Email>", b'<x:Email xmlns:x="urn:other">')
        .replace(b"</sf:Email>", b"</x:Email>")
    )
    with pytest.raises(NotAnOutboundMessage, match="Email"):
        parse_outbound_message(body)


def test_undeclared_type_prefix_and_repeated_field() -> None:
    with pytest.raises(NotAnOutboundMessage, match="undeclared prefix"):
        parse_outbound_message(one().replace(b'xsi:type="sf:User"', b'xsi:type="zz:User"'))
    with pytest.raises(NotAnOutboundMessage, match="repeats"):
        parse_outbound_message(
            one(IsActive="true").replace(
                b"<sf:UserType>", b"<sf:IsActive>false</sf:IsActive><sf:UserType>"
            )
        )


@pytest.mark.parametrize("org", [OMIT, "", "00Dxx", "005xx000001Sv6e", "00D-xx0000001gPF"])
def test_missing_or_invalid_organization_id(org: object) -> None:
    with pytest.raises(MissingOrganizationId, match="OrganizationId"):
        body = make_outbound_message([], organization_id=org)  # type: ignore[arg-type]
        parse_outbound_message(body)


def test_organization_id_nil_is_missing() -> None:
    body = make_outbound_message([]).replace(
        f"<OrganizationId>{DEMO_ORG_ID}</OrganizationId>".encode(),
        b'<OrganizationId xsi:nil="true"/>',
    )
    with pytest.raises(MissingOrganizationId):
        parse_outbound_message(body)


def test_one_hundred_notifications_ok_one_hundred_one_rejected() -> None:
    hundred = [make_notification() for _ in range(100)]
    assert len(parse_outbound_message(make_outbound_message(hundred)).notifications) == 100
    with pytest.raises(TooManyNotifications, match="101"):
        parse_outbound_message(make_outbound_message([*hundred, make_notification()]))


def test_errors_never_contain_the_session_id() -> None:
    body = make_outbound_message([make_notification()], session_id=SECRET_SESSION)
    for broken in (
        body[:-30],
        body.replace(b"urn:sobject.enterprise", b"urn:x"),
        body.replace(DEMO_ORG_ID.encode(), b"bogus"),
    ):
        with pytest.raises(Exception) as info:
            parse_outbound_message(broken)
        assert "Secret" not in str(info.value)


# --- Ack and faults --------------------------------------------------------------------


def test_ack_is_exactly_the_wire_format() -> None:
    assert render_ack() == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
        b" <soapenv:Body>\n"
        b'  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
        b"   <Ack>true</Ack>\n"
        b"  </notificationsResponse>\n"
        b" </soapenv:Body>\n"
        b"</soapenv:Envelope>\n"
    )
    root = fromstring(render_ack())
    assert (
        root.findtext(
            f"{{{SOAPENV_NS}}}Body/{{{OUTBOUND_NS}}}notificationsResponse/{{{OUTBOUND_NS}}}Ack"
        )
        == "true"
    )
    assert ACK_CONTENT_TYPE == "text/xml; charset=utf-8"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("soapenv:Client", "soapenv:Client"),
        ("Server", "soapenv:Server"),
        ("Client.Authentication", "soapenv:Client.Authentication"),
        ("foo:Client", "soapenv:Server"),
        ("<bad>", "soapenv:Server"),
        ("Nope", "soapenv:Server"),
    ],
)
def test_fault_code_is_qualified(code: str, expected: str) -> None:
    root = fromstring(render_fault(code, "x"))
    fault = root.find(f"{{{SOAPENV_NS}}}Body/{{{SOAPENV_NS}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == expected


def test_fault_string_is_escaped() -> None:
    text = 'bad <OrganizationId> & \x00 "quoted" ü'
    body = render_fault("soapenv:Client", text)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = fromstring(body)
    assert root.findtext(f"{{{SOAPENV_NS}}}Body/{{{SOAPENV_NS}}}Fault/faultstring") == (
        'bad <OrganizationId> & \ufffd "quoted" ü'
    )
