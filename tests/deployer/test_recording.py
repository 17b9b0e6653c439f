"""Record mode (``pytest --sf-org``): a recording made through :func:`make_vcr` passes
through the same scrubber as the synthetic cassettes, so what lands on disk holds no token,
session id, password, secret or org-specific host, and only the API version the client
uses. The "org" here is a local HTTP server answering with made-up secrets in the shapes
Salesforce uses (SOAP login, OAuth token, version listing, Metadata deploy, a query)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.deployer._vcr import API_VERSION, ELIDED, HOST, make_vcr
from tests.deployer.test_cassettes import assert_no_secret
from tests.receiver._live import serve_in_thread

#: Made-up values a live org would put in the exchanges; none may reach the cassette.
SESSION = "00D5g000004XyZa!AQ0AQmadeUpSessionForTheRecordingTest.abcdef"
REFRESH = "5Aep861madeUpRefreshToken"
SECRETS = [
    SESSION,
    "AQ0AQmadeUp",
    REFRESH,
    "Hunter2madeUp",
    "TOKENmadeUp",
    "ck-madeUp-3MVG9",
    "cs-madeUp-secret",
    "admin@acme-corp.example.com",
    "webhookTokenMadeUp",
    "sig-madeUp",
    "00D5g000004XyZa",
    "acme-corp",
]
ORG_HOSTS = [
    "acme-corp.my.salesforce.com",
    "acme-corp--uat.sandbox.my.salesforce.com",
    "acme-corp.lightning.force.com",
    "acme-corp.file.force.com",
]
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def _zip() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("package.xml", "<Package/>")
        archive.writestr("flows/X.flow-meta.xml", "<Flow/>")
    return base64.b64encode(buffer.getvalue()).decode()


RESPONSES: dict[str, tuple[str, str]] = {
    f"/services/Soap/u/{API_VERSION}": (
        "text/xml",
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body><loginResponse><result>'
        f"<serverUrl>https://{ORG_HOSTS[0]}/services/Soap/u/{API_VERSION}/00D5g000004XyZa"
        f"</serverUrl><sessionId>{SESSION}</sessionId><userId>0055g00000AbCdE</userId>"
        "<userInfo><organizationId>00D5g000004XyZaEAK</organizationId></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>",
    ),
    "/services/oauth2/token": (
        "application/json",
        json.dumps(
            {
                "access_token": SESSION,
                "refresh_token": REFRESH,
                "signature": "sig-madeUp",
                "instance_url": f"https://{ORG_HOSTS[1]}",
                "id": "https://login.salesforce.com/id/00D5g000004XyZaEAK/0055g00000AbCdEAAW",
            }
        ),
    ),
    "/services/data/": (
        "application/json",
        json.dumps(
            [
                {"label": f"v{v}", "url": f"/services/data/v{v}", "version": v}
                for v in ("60.0", "61.0", API_VERSION, "65.0", "66.0")
            ]
        ),
    ),
    f"/services/Soap/m/{API_VERSION}": (
        "text/xml",
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body><checkDeployStatusResponse>'
        "<result><id>0Af5g00000XyZaB</id><done>true</done><details><componentSuccesses>"
        "<fileName>workflows/User.workflow</fileName><fullName>User.Notify</fullName>"
        "</componentSuccesses></details></result></checkDeployStatusResponse>"
        f"<endpointUrl>https://hooks.example.com/webhook?token=webhookTokenMadeUp</endpointUrl>"
        f"<link>https://{ORG_HOSTS[2]}/lightning/setup</link>"
        f"<file>https://{ORG_HOSTS[3]}/servlet/x</file>"
        "</soapenv:Body></soapenv:Envelope>",
    ),
    f"/services/data/v{API_VERSION}/query": (
        "application/json",
        json.dumps(
            {
                "totalSize": 1,
                "done": True,
                "records": [{"Id": "00D5g000004XyZaEAK", "InstanceName": "NA224"}],
            }
        ),
    ),
}


async def _answer(request: Request) -> Response:
    await request.body()
    content_type, body = RESPONSES[request.url.path]
    return Response(
        body,
        media_type=f"{content_type};charset=UTF-8",
        headers={"Set-Cookie": f"sid={SESSION}; Path=/; Secure", "Sforce-Limit-Info": "x=1"},
    )


@pytest.fixture
def org() -> Iterator[str]:
    """The stand-in org: every path of :data:`RESPONSES`, on a loopback port."""
    app = Starlette(routes=[Route("/{path:path}", _answer, methods=["GET", "POST"])])
    with serve_in_thread(app, lifespan="off") as base:
        yield base


def _exchanges(base: str) -> list[requests.Response]:
    auth = {"Authorization": f"Bearer {SESSION}"}
    with requests.Session() as http:
        return [
            http.post(
                f"{base}/services/Soap/u/{API_VERSION}",
                data=(
                    f'<env:Envelope xmlns:env="{SOAP}"><env:Body><n1:login '
                    'xmlns:n1="urn:partner.soap.sforce.com">'
                    "<n1:username>admin@acme-corp.example.com</n1:username>"
                    "<n1:password>Hunter2madeUpTOKENmadeUp</n1:password></n1:login>"
                    "</env:Body></env:Envelope>"
                ),
                headers={"SOAPAction": "login", "Content-Type": "text/xml"},
            ),
            http.post(
                f"{base}/services/oauth2/token",
                data={
                    "grant_type": "password",
                    "client_id": "ck-madeUp-3MVG9",
                    "client_secret": "cs-madeUp-secret",
                    "username": "admin@acme-corp.example.com",
                    "password": "Hunter2madeUpTOKENmadeUp",
                },
            ),
            http.get(f"{base}/services/data/", headers=auth),
            http.post(
                f"{base}/services/Soap/m/{API_VERSION}",
                data=(
                    f'<env:Envelope xmlns:env="{SOAP}"><env:Header><met:SessionHeader '
                    f'xmlns:met="http://soap.sforce.com/2006/04/metadata"><met:sessionId>'
                    f"{SESSION}</met:sessionId></met:SessionHeader></env:Header><env:Body>"
                    f"<met:deploy><met:ZipFile>{_zip()}</met:ZipFile></met:deploy>"
                    "</env:Body></env:Envelope>"
                ),
                headers={**auth, "SOAPAction": "deploy", "Content-Type": "text/xml"},
            ),
            http.get(
                f"{base}/services/data/v{API_VERSION}/query",
                params={"q": "SELECT Id FROM Organization WHERE Id = '00D5g000004XyZaEAK'"},
                headers=auth,
            ),
        ]


def test_a_recorded_interaction_is_scrubbed_on_disk(org: str, tmp_path: Path) -> None:
    path = tmp_path / "recorded.yaml"
    with make_vcr(record_mode="once").use_cassette(str(path)):
        live = _exchanges(org)
    assert SESSION in live[0].text  # the "org" did hand out the secrets

    text = path.read_text(encoding="utf-8")
    for secret in SECRETS + ORG_HOSTS:
        assert secret not in text, secret
    assert "127.0.0.1" not in text
    assert_no_secret(text)
    data = yaml.safe_load(text)
    requests_ = [i["request"] for i in data["interactions"]]
    assert {r["uri"].split("/")[2] for r in requests_} == {HOST}
    assert [dict(r["headers"]) for r in requests_] == [
        {"SOAPAction": ["login"]},
        {},
        {},
        {"SOAPAction": ["deploy"]},
        {},
    ]
    assert (
        "<met:ZipFile>files=flows/X.flow-meta.xml,package.xml</met:ZipFile>"
        in (requests_[3]["body"])
    )
    bodies = [i["response"]["body"]["string"] for i in data["interactions"]]
    assert f"<sessionId>{ELIDED}</sessionId>" in bodies[0]
    token = json.loads(bodies[1])
    assert (token["access_token"], token["refresh_token"]) == (ELIDED, ELIDED)
    assert token["instance_url"] == f"https://{HOST}"
    assert [v["version"] for v in json.loads(bodies[2])] == [API_VERSION]
    assert "token=" + ELIDED in bodies[3]
    assert json.loads(bodies[4])["records"][0]["Id"] == "00D000000000001EAK"
    for response in (i["response"] for i in data["interactions"]):
        assert {h.lower() for h in response["headers"]} <= {"content-type"}


def test_a_recording_plays_back_without_the_org(org: str, tmp_path: Path) -> None:
    path = tmp_path / "recorded.yaml"
    with make_vcr(record_mode="once").use_cassette(str(path)):
        _exchanges(org)
    with make_vcr().use_cassette(str(path)) as cassette:
        replayed = _exchanges("http://127.0.0.1:9")  # nothing listens there
    assert cassette.all_played
    assert [json.loads(replayed[2].text)[0]["version"]] == [API_VERSION]
    assert SESSION not in replayed[0].text


def test_sf_org_switches_the_vcr_the_paths_and_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``pytest --sf-org URL`` sets (``tests/conftest.py`` calls ``start_recording``)."""
    from tests.deployer import _vcr
    from tests.deployer._harness import SESSION_ARGS

    assert make_vcr().record_mode == "none"
    assert _vcr.live_args(SESSION_ARGS) == SESSION_ARGS  # playback: untouched
    monkeypatch.setattr(_vcr, "RECORDED", tmp_path / "recorded")
    monkeypatch.setenv("SF_ACCESS_TOKEN", "made-up-live-token")
    monkeypatch.setenv("SF_ORG_ID", "00D5g000004XyZaEAK")
    _vcr._live.cache_clear()
    monkeypatch.setattr(_vcr, "_recording", None)
    _vcr.start_recording("https://acme-corp.my.salesforce.com/", "new_episodes")
    try:
        assert make_vcr().record_mode == "new_episodes"
        assert _vcr.cassette_path("deploy_flow.yaml") == str(
            tmp_path / "recorded" / "deploy_flow.yaml"
        )
        assert _vcr.live_args([*SESSION_ARGS, "00D000000000001"], "00D000000000001") == [
            "--instance-url",
            "https://acme-corp.my.salesforce.com",
            "--access-token",
            "made-up-live-token",
            "00D5g000004XyZaEAK",
        ]
    finally:
        _vcr._live.cache_clear()
    with pytest.raises(ValueError, match="record mode"):
        _vcr.start_recording("x", "sometimes")


def test_a_recording_is_played_instead_of_the_synthetic_cassette(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.deployer import _vcr

    monkeypatch.setattr(_vcr, "RECORDED", tmp_path)
    assert _vcr.cassette_path("check_ok.yaml") == str(_vcr.CASSETTES / "check_ok.yaml")
    (tmp_path / "check_ok.yaml").write_text("interactions: []\nversion: 1\n")
    assert _vcr.cassette_path("check_ok.yaml") == str(tmp_path / "check_ok.yaml")
