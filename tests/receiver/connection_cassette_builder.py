# ruff: noqa: E501  (recorded-shape data: one exchange per line reads best)
"""Builds the cassettes of the stored Salesforce connection (``cassettes/synthetic/connect_*.yaml``,
``cassettes/synthetic/stored_oauth_*.yaml``) from Salesforce's published response shapes (OAuth
token JSON, SOAP ``loginResponse``, identity ``userinfo``), through the same scrubber as
every cassette (``tests.deployer._vcr.Scrubber``). Synthetic, not recorded from an org.

Regenerate with::

    .venv/bin/python -m tests.receiver.connection_cassette_builder
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from vcr.request import Request
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from tests.deployer._vcr import CASSETTES, Scrubber
from tests.deployer.cassette_builder import (
    DEPLOYING_USER,
    LIVE_HOST,
    LIVE_SESSION,
    ORG_ID,
    OTHER_ORG_ID,
    Interaction,
    V,
    _response,
    preflight_calls,
    rest,
    soql,
)

#: The refresh token a rotation returns (scrubbed to ``**Elided**`` on disk like every
#: token: a test sees the rotation as the stored token changing to that value).
ROTATED_REFRESH = "5Aep861FakeRotatedRefreshToken"


def _token(
    host: str, form: dict[str, str], *, status: int = 200, payload: Any = None
) -> Interaction:
    request = Request(
        "POST",
        f"https://{host}/services/oauth2/token",
        urlencode(form),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = payload or {
        "access_token": LIVE_SESSION,
        "signature": "c2lnbmF0dXJl",
        "scope": "api refresh_token",
        "instance_url": f"https://{LIVE_HOST}",
        "id": f"https://login.salesforce.com/id/{ORG_ID}/005000000000001AAA",
        "token_type": "Bearer",
        "issued_at": "1794052800000",
    }
    response = _response(json.dumps(body), 200)
    if status != 200:
        response["status"] = {"code": status, "message": "Bad Request"}
    return request, response


def _identity(org_id: str = ORG_ID) -> list[Interaction]:
    return [
        soql(
            "SELECT Id, IsSandbox, OrganizationType FROM Organization",
            [{"Id": org_id, "IsSandbox": False, "OrganizationType": "Developer Edition"}],
            "Organization",
        ),
        rest(
            "/services/oauth2/userinfo",
            {
                "sub": f"https://login.salesforce.com/id/{org_id}/005000000000001AAA",
                "user_id": "005000000000001AAA",
                "organization_id": org_id,
                "preferred_username": DEPLOYING_USER,
            },
        ),
    ]


def _soap_login() -> Interaction:
    request = Request(
        "POST",
        f"https://login.salesforce.com/services/Soap/u/{V}",
        "<soapenv:Envelope><soapenv:Body><n1:login><n1:username>admin@acme.example.com"
        "</n1:username><n1:password>FakePassword1FakeToken</n1:password></n1:login>"
        "</soapenv:Body></soapenv:Envelope>",
        {"SOAPAction": "login", "Content-Type": "text/xml"},
    )
    answer = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
        "<metadataServerUrl>"
        f"https://{LIVE_HOST}/services/Soap/m/{V}/{ORG_ID[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>https://{LIVE_HOST}/services/Soap/u/{V}/{ORG_ID[:15]}</serverUrl>"
        f"<sessionId>{LIVE_SESSION}</sessionId><userId>005000000000001AAA</userId>"
        f"<userInfo><organizationId>{ORG_ID}</organizationId>"
        f"<userName>{DEPLOYING_USER}</userName></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return request, _response(answer, 200, "text/xml")


def _expired_versions() -> Interaction:
    return rest(
        "/services/data/",
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
        status=401,
    )


def _revoke() -> Interaction:
    request = Request(
        "POST",
        "https://login.salesforce.com/services/oauth2/revoke",
        urlencode({"token": "5Aep861FakeRefreshToken"}),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    return request, _response("", 200)


REFRESH_FORM = {
    "grant_type": "refresh_token",
    "refresh_token": "5Aep861FakeRefreshToken",
    "client_id": "3MVG9FakeClientId",
}


def scenarios() -> dict[str, list[Interaction]]:
    """Name -> the HTTP exchanges, in the order they are made."""
    jwt_form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": "eyJhbGciOiJSUzI1NiJ9.FakeAssertion.FakeSignature",
    }
    cc_form = {
        "grant_type": "client_credentials",
        "client_id": "3MVG9FakeConsumerKey",
        "client_secret": "FakeConsumerSecret123",
    }
    refreshed = {
        "access_token": LIVE_SESSION,
        "refresh_token": ROTATED_REFRESH,
        "signature": "c2lnbmF0dXJl",
        "scope": "api refresh_token",
        "instance_url": f"https://{LIVE_HOST}",
        "id": f"https://login.salesforce.com/id/{ORG_ID}/005000000000001AAA",
        "token_type": "Bearer",
        "issued_at": "1794052800000",
    }
    return {
        "connect_session": _identity(),
        "connect_jwt": [_token("login.salesforce.com", jwt_form), *_identity()],
        "connect_client_credentials": [_token(LIVE_HOST, cc_form), *_identity()],
        "connect_soap_login": [_soap_login(), *_identity()],
        "connect_other_org": _identity(OTHER_ORG_ID)[:1],
        # a stored oauth connection whose access token expired: refreshed (rotated) once
        "stored_oauth_check": [
            _expired_versions(),
            _token("login.salesforce.com", REFRESH_FORM, payload=refreshed),
            *preflight_calls(),
        ],
        # the refresh token was revoked (or expired after 30 idle days)
        "stored_oauth_revoked": [
            _expired_versions(),
            _token(
                "login.salesforce.com",
                REFRESH_FORM,
                status=400,
                payload={
                    "error": "invalid_grant",
                    "error_description": "expired access/refresh token",
                },
            ),
        ],
        "stored_oauth_keepalive": [
            _token("login.salesforce.com", REFRESH_FORM, payload=refreshed),
        ],
        "disconnect_oauth": [_revoke()],
    }


def build() -> list[str]:
    """Write every cassette; return the file names."""
    written = []
    for name, interactions in sorted(scenarios().items()):
        scrubber = Scrubber()
        requests = [scrubber.request(r) for r, _ in interactions]
        responses = [scrubber.response(a) for _, a in interactions]
        text = serialize({"requests": requests, "responses": responses}, yamlserializer)
        (CASSETTES / f"{name}.yaml").write_text(text, encoding="utf-8")
        written.append(f"{name}.yaml")
    return written


if __name__ == "__main__":
    for written_name in build():
        print(written_name)  # noqa: T201
