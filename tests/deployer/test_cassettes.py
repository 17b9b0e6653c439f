"""The cassettes: one per scenario of issue 3, scrubbed of secrets; the recording hooks
really scrub."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from vcr.request import Request

from tests.deployer._vcr import (
    API_VERSION,
    CASSETTE_ROOT,
    CASSETTES,
    ELIDED,
    HOST,
    RECORDED,
    Scrubber,
)

SCENARIOS = [
    "check_ok",
    "deploy_workflow",
    "deploy_flow",
    "deploy_check_only",
    "deploy_component_failure",
    "deploy_component_failures_list",
    "deploy_error_message_only",
    "deploy_flow_inactive",
    "deploy_timeout",
    "preflight_missing_permission",
    "preflight_no_call_center",
    "preflight_other_org",
    "expired_session_refresh",
    "expired_session_direct",
    "switch_workflow_to_flow",
    "undeploy",
    "undeploy_rerun",
    "switch_workflow_to_flow_rule_gone",
    "deploy_status_fault",
    # the stored connection's (tests/receiver/connection_cassette_builder.py)
    "connect_session",
    "connect_jwt",
    "connect_client_credentials",
    "connect_soap_login",
    "connect_other_org",
    "stored_oauth_check",
    "stored_oauth_revoked",
    "stored_oauth_keepalive",
    "disconnect_oauth",
]
#: Elements a SOAP login (or any envelope) carries secrets in, with any namespace prefix.
XML_SECRETS = re.compile(
    r"<((?:[\w.-]+:)?(?:sessionId|password|username|securityToken))(?:\s[^>]*)?>([^<]*)<"
)
SESSION_ID = re.compile(r"00D[0-9A-Za-z]{12,15}![0-9A-Za-z._]+")
ORG_ID = re.compile(r"\b00D[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?\b")
PLACEHOLDER = re.compile(r"^00D0{9}[0-9]{3}")
HOSTS = re.compile(r"[0-9A-Za-z.-]+\.(?:salesforce|force)\.com")


#: An API version in a URI (``/services/data/v62.0/``, ``/services/Soap/m/62.0``) or in
#: the version listing's JSON.
VERSIONS = re.compile(r"/v(\d+\.\d+)\b|/Soap/\w/(\d+\.\d+)|\\?\"version\\?\": ?\\?\"(\d+\.\d+)")


def test_every_cassette_uses_the_one_api_version_of_the_client() -> None:
    files = sorted(CASSETTE_ROOT.rglob("*.yaml"))
    assert len(files) > len(SCENARIOS)
    for path in files:
        text = path.read_text(encoding="utf-8")
        found = {next(v for v in m.groups() if v) for m in VERSIONS.finditer(text)}
        assert found <= {API_VERSION}, (path.name, found)


def test_recorded_cassettes_hold_no_secret() -> None:
    """What ``pytest --sf-org`` recorded (none is committed yet) passes the same check."""
    for path in sorted(RECORDED.rglob("*.yaml")):
        assert_no_secret(path.read_text(encoding="utf-8"))


def test_every_scenario_has_a_cassette() -> None:
    on_disk = sorted(p.stem for p in CASSETTES.glob("*.yaml"))
    assert on_disk == sorted(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_cassette_holds_no_secret(name: str) -> None:
    assert_no_secret((CASSETTES / f"{name}.yaml").read_text(encoding="utf-8"))


def assert_no_secret(text: str) -> None:
    """The secret check of every cassette (synthetic or recorded): YAML ``text``."""
    data = yaml.safe_load(text)
    assert SESSION_ID.search(text) is None
    assert all(PLACEHOLDER.match(m) for m in ORG_ID.findall(text)), ORG_ID.findall(text)
    assert set(HOSTS.findall(text)) <= {HOST, "login.salesforce.com"}
    for pattern in ("Authorization", "Bearer ", "Set-Cookie", "sid="):
        assert pattern not in text
    for match in re.finditer(r"token=([^&\"'<\s]+)", text):
        assert match.group(1) in (ELIDED, "%2A%2AElided%2A%2A")
    for match in re.finditer(r"<(?:\w+:)?ZipFile>([^<]*)<", text):
        assert match.group(1).startswith("files=")
    for match in XML_SECRETS.finditer(text):
        assert match.group(2) == ELIDED, match.group(1)
    for interaction in data["interactions"]:
        body = interaction["response"]["body"]["string"]
        if body.startswith("{"):
            payload = json.loads(body)
            for key in ("access_token", "refresh_token", "signature"):
                assert payload.get(key, ELIDED) == ELIDED


def test_scrubber_removes_what_a_live_recording_holds() -> None:
    scrubber = Scrubber()
    request = Request(
        "POST",
        "https://acme.my.salesforce.com/services/oauth2/token?x=1",
        b"grant_type=client_credentials&client_id=3MVGreal&client_secret=realsecret",
        {"Authorization": "Bearer 00D5g000004XyZa!AQ0AQreal", "SOAPAction": "deploy"},
    )
    scrubbed = scrubber.request(request)
    assert scrubbed.host == HOST
    assert b"realsecret" not in scrubbed.body and b"3MVGreal" not in scrubbed.body
    assert dict(scrubbed.headers) == {"SOAPAction": "deploy"}
    response = {
        "status": {"code": 200, "message": "OK"},
        "headers": {"Content-Type": ["application/json"], "Set-Cookie": ["sid=x"]},
        "body": {
            "string": json.dumps(
                {
                    "access_token": "00D5g000004XyZa!AQ0AQreal",
                    "instance_url": "https://na99.salesforce.com",
                    "id": "https://login.salesforce.com/id/00D5g000004XyZaEAK/0055g000001",
                }
            ).encode()
        },
    }
    out = scrubber.response(response)["body"]["string"].decode()
    assert "00D5g000004XyZa" not in out and "na99" not in out
    assert json.loads(out)["access_token"] == ELIDED
    assert "00D000000000001EAK" in out  # same org, same placeholder
    soap = scrubber.text(
        "<sessionId>00D5g000004XyZa!AQ0AQreal</sessionId>"
        "<endpointUrl>https://h.example.com/w?token=abc&amp;x=1</endpointUrl>"
    )
    assert "AQ0AQreal" not in soap and "token=abc" not in soap


SOAP_LOGIN = (
    '<?xml version="1.0" encoding="utf-8" ?><env:Envelope '
    'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
    '<n1:login xmlns:n1="urn:partner.soap.sforce.com">'
    "<n1:username>admin@acme-real.example.com</n1:username>"
    "<n1:password>Hunter2&amp;pw1234TOKENabcdef</n1:password></n1:login>"
    "</env:Body></env:Envelope>"
)


def test_scrubber_removes_soap_login_username_and_password() -> None:
    request = Request(
        "POST",
        "https://login.salesforce.com/services/Soap/u/62.0",
        SOAP_LOGIN.encode(),
        {"SOAPAction": "login"},
    )
    body = Scrubber().request(request).body.decode()
    assert "Hunter2" not in body and "TOKENabcdef" not in body
    assert "admin@acme-real" not in body
    assert f"<n1:password>{ELIDED}</n1:password>" in body
    assert f"<n1:username>{ELIDED}</n1:username>" in body
    for variant in (
        "<password>pw</password>",
        '<urn:password xsi:type="x">pw</urn:password>',
        "<sf.x:securityToken>pw</sf.x:securityToken>",
    ):
        scrubbed = Scrubber().text(variant)
        assert ">pw<" not in scrubbed and ELIDED in scrubbed
