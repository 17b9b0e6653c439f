"""The app: startup migration, routes, the access-log filters, and the README's examples
posted through the app give exactly the agents the mapping (CONTRACT section 2) says."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from receiver._logging import (
    RedactSecretsFilter,
    StripQueryFilter,
    redact,
    strip_query,
    uvicorn_log_config,
)
from receiver.agents import list_agents
from receiver.app import create_app
from receiver.db import transaction
from receiver.organizations import add_organization, set_enabled, webhook_url
from receiver.settings import Settings
from tests.receiver._harness import NOW, TestClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO_SALESFORCE_ORG_ID = "00D000000000001EAA"

PROFILE = "00eDn00000PrAg1IAF"
ROLE = "00EDn00000RoLe1MAF"
CALL_CENTER = "04vDn00000CcA01IAF"

ADA = {
    "username": "ada.lovelace@acme.com",
    "crmId": "005Dn00000AbcD1IAJ",
    "crmUser": "ada.lovelace@acme.com",
    "name": "Ada Lovelace",
    "pictureUrl": "https://acme.my.salesforce.com/profilephoto/005/T",
    "disabled": False,
    "inboundEnabled": True,
    "phoneNumbers": [
        {"type": "mobile", "number": "+1 415 555 0101"},
        {"type": "other", "number": "+1 415 555 0100"},
    ],
    "crm": {
        "callCenterId": CALL_CENTER,
        "email": "ada@acme.com",
        "language": "en_US",
        "profileId": PROFILE,
        "userRoleId": ROLE,
        "userType": "Standard",
        "customFields": {"Agent_Team__c": "Tier 1 & Escalations"},
    },
}
JUERGEN_CREATED: dict[str, Any] = {
    "username": "juergen.gross@acme.com",
    "crmId": "005Dn00000AbcD2IAJ",
    "crmUser": "juergen.gross@acme.com",
    "name": "Jürgen Groß",
    "pictureUrl": None,
    "disabled": True,
    "inboundEnabled": False,
    "phoneNumbers": [],
    "crm": {
        "callCenterId": None,
        "email": "juergen.gross@acme.com",
        "language": "de",
        "profileId": PROFILE,
        "userRoleId": None,
        "userType": "Standard",
        "customFields": {},
    },
}
JUERGEN_UPDATED = {
    **JUERGEN_CREATED,
    "disabled": False,
    "inboundEnabled": True,
    "phoneNumbers": [{"type": "mobile", "number": "+49 30 5550 1234"}],
    "crm": {**JUERGEN_CREATED["crm"], "callCenterId": CALL_CENTER},
}
KATHERINE: dict[str, Any] = {
    "username": "katherine.johnson@acme.com.uat",
    "crmId": "005Dn00000AbcD3IAJ",
    "crmUser": "katherine.johnson@acme.com.uat",
    "name": "Katherine Johnson",
    "pictureUrl": None,
    "disabled": False,
    "inboundEnabled": True,
    "phoneNumbers": [{"type": "other", "number": "+1 757 555 0199"}],
    "crm": {
        "callCenterId": CALL_CENTER,
        "email": "katherine.johnson@acme.com",
        "language": "en_US",
        "profileId": PROFILE,
        "userRoleId": None,
        "userType": "Standard",
        "customFields": {},
    },
}


def _demo(engine: Engine, key: bytes) -> str:
    with transaction(engine) as session:
        org, token = add_organization(
            session, name="demo", key=key, salesforce_org_id=DEMO_SALESFORCE_ORG_ID
        )
        set_enabled(session, name="demo", enabled=True)
        return webhook_url(org, token)


def _agents(engine: Engine) -> list[dict[str, Any]]:
    with transaction(engine) as session:
        return [a.to_json() for a in list_agents(session, organization_id="demo")]


def _post(client: TestClient, url: str, name: str) -> None:
    response = client.post(
        url,
        content=(EXAMPLES / name).read_bytes(),
        headers={"content-type": "text/xml; charset=UTF-8"},
    )
    assert response.status_code == 200, response.text
    assert b"<Ack>true</Ack>" in response.content


def test_examples_give_the_agents_the_mapping_says(
    engine: Engine, database_url: str, key: bytes
) -> None:
    url = _demo(engine, key)
    settings = Settings(database_url=database_url)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as client:
        _post(client, url, "01-create-users.xml")
        assert _agents(engine) == [ADA, JUERGEN_CREATED, KATHERINE]
        _post(client, url, "02-update-user.xml")
        assert _agents(engine) == [ADA, JUERGEN_UPDATED, KATHERINE]
        _post(client, url, "03-deactivate-user.xml")
        assert _agents(engine) == [ADA, JUERGEN_UPDATED]
        for name in ("01-create-users.xml", "02-update-user.xml", "03-deactivate-user.xml"):
            _post(client, url, name)  # Salesforce redelivers: nothing changes
        assert _agents(engine) == [ADA, JUERGEN_UPDATED]


def test_examples_carry_the_demo_org_id_and_exact_wire_format() -> None:
    for path in sorted(EXAMPLES.glob("*.xml")):
        data = path.read_bytes()
        assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
        assert f"<OrganizationId>{DEMO_SALESFORCE_ORG_ID}</OrganizationId>".encode() in data
        assert b'xsi:type="sf:User" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"' in data
        assert b'<SessionId xsi:nil="true"/>' in data


def test_startup_migrates_an_empty_store(database_url: str, key: bytes) -> None:
    settings = Settings(database_url=database_url)
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        engine = app.state.context.engine
        url = _demo(engine, key)
        response = client.post(url, content=(EXAMPLES / "01-create-users.xml").read_bytes())
        assert response.status_code == 200
        assert len(_agents(engine)) == 3


def test_unknown_path_is_404(engine: Engine, database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=database_url), engine=engine)) as client:
        assert client.get("/v2/nothing").status_code == 404


# --- access logs never show the query string ----------------------------------------------


def _access_record(path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", path, "1.1", 200),
        None,
    )


def test_strip_query_filter_removes_the_token_from_access_records() -> None:
    record = _access_record("/v2/features/x/webhook?token=SECRET123&a=b")
    assert StripQueryFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "POST /v2/features/x/webhook HTTP/1.1" 200'


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_access_records_never_show_an_agent_session_id(method: str) -> None:
    record = _access_record("/v2/sessions/Zx9-secretSessionId_abc?x=1")
    record.args = ("127.0.0.1:5000", method, "/v2/sessions/Zx9-secretSessionId_abc?x=1", "1.1", 200)
    assert StripQueryFilter().filter(record)
    message = record.getMessage()
    assert "secretSessionId" not in message
    assert f'"{method} /v2/sessions/[redacted] HTTP/1.1"' in message
    # the other routes keep their path
    other = _access_record("/v2/organizations/acme/users/005000000000001AAA/sessions")
    assert StripQueryFilter().filter(other)
    assert "/v2/organizations/acme/users/005000000000001AAA/sessions" in other.getMessage()


def test_redact_filter_hides_tokens_anywhere() -> None:
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "got %s and %s",
        ("url?token=SECRET123", "Authorization: Bearer ADMINSECRET"),
        None,
    )
    assert RedactSecretsFilter().filter(record)
    assert "SECRET123" not in record.getMessage()
    assert "ADMINSECRET" not in record.getMessage()
    assert redact("a?token=abc&b=1") == "a?token=[redacted]&b=1"
    assert strip_query("/p?token=x") == "/p"


@pytest.mark.parametrize("handler", ["access", "default"])
def test_uvicorn_log_config_installs_the_filters(handler: str) -> None:
    config = uvicorn_log_config("debug")
    assert "redact" in config["handlers"][handler]["filters"]
    assert "strip_query" in config["handlers"]["access"]["filters"]
    assert config["loggers"]["agent_provision"]["level"] == "DEBUG"


def test_configured_access_log_output_has_no_token(capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    config = uvicorn_log_config()
    config["disable_existing_loggers"] = False
    config["loggers"] = {
        "test.access.copy": {"handlers": ["access"], "level": "INFO", "propagate": False}
    }
    config["handlers"] = {"access": config["handlers"]["access"]}
    config["formatters"] = {"access": config["formatters"]["access"]}
    logging.config.dictConfig(config)
    logger = logging.getLogger("test.access.copy")
    try:
        logger.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:1",
            "POST",
            "/v2/features/agent-auto-provision/organizations/demo/integrations/provider"
            "/webhook?token=TOPSECRET",
            "1.1",
            200,
        )
        out = capsys.readouterr()
        text = out.out + out.err
        assert "/integrations/provider/webhook HTTP/1.1" in text
        assert "TOPSECRET" not in text and "token=" not in text
    finally:
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()


def test_a_token_pasted_into_the_path_is_cut_from_logs() -> None:
    from receiver._logging import redact, strip_query

    assert strip_query("/v2/x/webhook%3Ftoken%3DSECRET") == "/v2/x/webhook"
    assert strip_query("/v2/x/webhook%3ftoken%3dSECRET") == "/v2/x/webhook"
    assert strip_query("/v2/x/webhook?token=SECRET") == "/v2/x/webhook"
    assert "SECRET" not in redact("POST /v2/x/webhook%3Ftoken%3DSECRET HTTP/1.1")
