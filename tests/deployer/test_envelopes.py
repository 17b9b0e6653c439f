"""Metadata API envelopes (rendered) and answers (parsed), in the shapes of
reference ``samples/metadata/`` (our own bodies)."""

from __future__ import annotations

import base64

import pytest
from defusedxml import ElementTree as SafeET

from deployer.envelopes import (
    parse_check_deploy_status,
    parse_deploy_response,
    parse_soap_fault,
    render_check_deploy_status,
    render_deploy,
)
from sf_metadata.errors import SalesforceError

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MD = "http://soap.sforce.com/2006/04/metadata"


def envelope(inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP}" '
        f'xmlns="{MD}"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>'
    ).encode()


def status(body: str) -> bytes:
    inner = f"<result>{body}</result>"
    return envelope(f"<checkDeployStatusResponse>{inner}</checkDeployStatusResponse>")


FAILURE = (
    "<componentFailures><changed>false</changed><columnNumber>7</columnNumber>"
    "<componentType>{t}</componentType><created>false</created><deleted>false</deleted>"
    "<fileName>workflows/User.workflow</fileName><fullName>{n}</fullName>"
    "<lineNumber>12</lineNumber><problem>{p}</problem><problemType>Error</problemType>"
    "<success>false</success></componentFailures>"
)


def test_deploy_envelope_options_are_lowercase_and_complete() -> None:
    body = render_deploy("SESSION&<", b"PK-zip", check_only=True)
    root = SafeET.fromstring(body)
    options = root.find(f"{{{SOAP}}}Body/{{{MD}}}deploy/{{{MD}}}DeployOptions")
    assert options is not None
    values = {child.tag.split("}")[1]: child.text for child in options}
    assert values == {
        "allowMissingFiles": "false",
        "autoUpdatePackage": "false",
        "checkOnly": "true",
        "ignoreWarnings": "false",
        "performRetrieve": "false",
        "purgeOnDelete": "false",
        "rollbackOnError": "true",
        "singlePackage": "true",
    }
    assert root.findtext(f".//{{{MD}}}sessionId") == "SESSION&<"
    assert base64.b64decode(root.findtext(f".//{{{MD}}}ZipFile") or "") == b"PK-zip"
    assert b"None" not in body and b"True" not in body


def test_check_deploy_status_envelope() -> None:
    root = SafeET.fromstring(render_check_deploy_status("S", "0Af000000000001AAA"))
    assert root.findtext(f".//{{{MD}}}asyncProcessId") == "0Af000000000001AAA"
    assert root.findtext(f".//{{{MD}}}includeDetails") == "true"


def test_deploy_response_id() -> None:
    body = envelope(
        "<deployResponse><result><done>false</done><id>0Af1</id>"
        "<state>Queued</state></result></deployResponse>"
    )
    assert parse_deploy_response(body) == "0Af1"
    with pytest.raises(SalesforceError, match="no deploy id"):
        parse_deploy_response(
            envelope("<deployResponse><result><done>false</done></result></deployResponse>")
        )


def test_one_failure_element() -> None:
    result = parse_check_deploy_status(
        status(
            "<details>" + FAILURE.format(t="WorkflowRule", n="User.R", p="bad") + "</details>"
            "<done>true</done><id>0Af1</id><status>Failed</status><success>false</success>"
        )
    )
    [failure] = result.component_failures
    assert failure.component == "WorkflowRule:User.R"
    assert failure.describe() == (
        "WorkflowRule User.R (workflows/User.workflow line 12, col 7): Error: bad"
    )


def test_list_of_failures_and_successes() -> None:
    details = (
        FAILURE.format(t="Flow", n="F", p="one")
        + FAILURE.format(t="X", n="Y", p="two")
        + "<componentSuccesses><componentType>WorkflowOutboundMessage</componentType>"
        "<fullName>User.OM</fullName><success>true</success></componentSuccesses>"
    )
    result = parse_check_deploy_status(
        status(f"<details>{details}</details><done>true</done><id>0Af1</id><status>Failed</status>")
    )
    assert [f.problem for f in result.component_failures] == ["one", "two"]
    assert [s.component for s in result.component_successes] == ["WorkflowOutboundMessage:User.OM"]


def test_error_message_only() -> None:
    result = parse_check_deploy_status(
        status(
            "<done>true</done><errorMessage>UNKNOWN_EXCEPTION: boom</errorMessage>"
            "<errorStatusCode>UNKNOWN_EXCEPTION</errorStatusCode><id>0Af1</id>"
            "<status>Failed</status><success>false</success>"
        )
    )
    assert result.component_failures == ()
    assert result.error_message == "UNKNOWN_EXCEPTION: boom"
    assert result.error_status_code == "UNKNOWN_EXCEPTION"


def test_answer_without_done_is_an_error() -> None:
    with pytest.raises(SalesforceError, match="done"):
        parse_check_deploy_status(status("<id>0Af1</id><status>InProgress</status>"))


def test_not_xml_and_dtd_are_refused() -> None:
    with pytest.raises(SalesforceError, match="not XML"):
        parse_check_deploy_status(b"<html>oops")
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">&e;'
        b"</soapenv:Envelope>"
    )
    with pytest.raises(SalesforceError):
        parse_check_deploy_status(evil)


def test_fault_parsing() -> None:
    body = (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:sf="{MD}"><soapenv:Body>'
        "<soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode>"
        "<faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader"
        "</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    ).encode()
    fault = parse_soap_fault(body)
    assert fault is not None and fault.expired_session
    assert fault.code == "INVALID_SESSION_ID"
    assert parse_soap_fault(b"not xml") is None
    assert parse_soap_fault(envelope("<deployResponse/>")) is None
