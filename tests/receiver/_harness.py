"""The shared webhook test harness: a running app (Starlette's TestClient) plus the
organization it serves, the ``make_receiver``/``receiver`` fixtures (exported to the test
modules by ``tests/receiver/conftest.py``) and the SOAP answer checks ``assert_ack`` and
``fault_string``.

SOAP namespaces: CONTRACT section 3 and the Outbound Message WSDL
(https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.exceptions import StarletteDeprecationWarning

from receiver.app import create_app
from receiver.db import transaction
from receiver.models import Agent, ProvisioningEvent, ProvisioningMessage
from receiver.organizations import webhook_path
from receiver.settings import Settings
from sf_metadata.soap import render_ack
from tests.conftest import MakeOrganization
from tests.factories import make_outbound_message

with warnings.catch_warnings():  # starlette 1.x prefers httpx2; httpx works the same here
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = [
    "ADMIN_TOKEN",
    "NOW",
    "OUTBOUND",
    "SOAPENV",
    "MakeReceiver",
    "Receiver",
    "TestClient",
    "assert_ack",
    "fault_string",
    "make_receiver",
    "receiver",
]

SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
ADMIN_TOKEN = "admin-secret"


@dataclass
class Receiver:
    """A running app (TestClient, and the ASGI ``app`` itself for raw calls) plus the
    organization it serves: its registered ``name``, webhook ``token`` and 18-character
    ``salesforce_org_id``."""

    client: TestClient
    engine: Engine
    name: str
    token: str
    salesforce_org_id: str
    app: Any

    def post(
        self,
        body: bytes,
        *,
        token: str | None = "default",
        name: str | None = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST ``body`` to the webhook of organization ``name`` (default: this one).

        The query is ``params`` exactly as given when it is not None (a dict or a list of
        pairs; ``{}`` sends no token); otherwise ``token=<token>``, where ``token``
        "default" means this organization's token and None sends no token. ``headers``
        are added to (and override) the SOAP content-type and SOAPAction headers."""
        if params is None:
            tok = self.token if token == "default" else token
            params = {} if tok is None else {"token": tok}
        return self.client.post(
            webhook_path(name or self.name),
            params=params,
            content=body,
            headers={
                "content-type": "text/xml; charset=UTF-8",
                "soapaction": '""',
                **(headers or {}),
            },
        )

    def message(self, *notifications: dict[str, Any], **kw: Any) -> bytes:
        """An Outbound Message with ``notifications``, from this organization by default."""
        kw.setdefault("organization_id", self.salesforce_org_id)
        return make_outbound_message(list(notifications), **kw)

    def agents(self) -> dict[str, Agent]:
        """This organization's agents by crm_id (the 18-character User Id)."""
        with transaction(self.engine) as session:
            rows = session.exec(select(Agent).where(Agent.organization_id == self.name))
            return {a.crm_id: a for a in rows}

    def usernames(self) -> dict[str, str | None]:
        """crm_id -> agent username."""
        return {crm: a.username for crm, a in self.agents().items()}

    def log(self) -> list[tuple[ProvisioningMessage, list[ProvisioningEvent]]]:
        """This organization's provisioning log: messages in id order, each with its events
        in document order."""
        with transaction(self.engine) as session:
            messages = list(
                session.exec(
                    select(ProvisioningMessage)
                    .where(ProvisioningMessage.organization_id == self.name)
                    .order_by(col(ProvisioningMessage.id))
                )
            )
            out = []
            for m in messages:
                events = list(
                    session.exec(
                        select(ProvisioningEvent)
                        .where(ProvisioningEvent.message_id == m.id)
                        .order_by(col(ProvisioningEvent.position))
                    )
                )
                out.append((m, events))
            return out

    def actions(self) -> list[str]:
        """Actions of the last logged message's notifications, in document order."""
        return [e.action for e in self.log()[-1][1]]

    def reasons(self) -> list[str]:
        """Reasons of the last logged message's notifications, in document order."""
        return [e.reason for e in self.log()[-1][1]]


MakeReceiver = Callable[..., Receiver]


@pytest.fixture
def make_receiver(
    engine: Engine, database_url: str, make_organization: MakeOrganization
) -> Iterator[MakeReceiver]:
    """Factory: ``make_receiver(*, enabled=True, max_body_bytes=5 MiB,
    raise_server_exceptions=True) -> Receiver`` for a new organization; the app's clock is
    ``NOW`` and its admin token ``ADMIN_TOKEN``. With ``raise_server_exceptions=False``
    server exceptions become 500 answers (as in production) instead of raising in the
    test. Every client is closed at teardown."""
    clients: list[TestClient] = []

    def factory(
        *,
        enabled: bool = True,
        max_body_bytes: int = 5 * 1024 * 1024,
        raise_server_exceptions: bool = True,
    ) -> Receiver:
        with transaction(engine) as session:
            org, token = make_organization(session, enabled=enabled)
            name, sf_org = org.id, org.salesforce_org_id
        settings = Settings(
            database_url=database_url,
            max_body_bytes=max_body_bytes,
            admin_token=SecretStr(ADMIN_TOKEN),
        )
        app = create_app(settings, engine=engine, clock=lambda: NOW, run_scheduler=False)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return Receiver(client, engine, name, token, sf_org, app)

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def receiver(make_receiver: MakeReceiver) -> Receiver:
    """An enabled organization's receiver with the default settings."""
    return make_receiver()


def fault_string(response: Any) -> str:
    """The faultstring of a SOAP 1.1 Fault answer (asserts it is one, as text/xml)."""
    root = ElementTree.fromstring(response.content)
    fault = root.find(f"{{{SOAPENV}}}Body/{{{SOAPENV}}}Fault")
    assert fault is not None, response.text
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    return fault.findtext("faultstring") or ""


def assert_ack(response: Any) -> None:
    """Asserts ``response`` is the 200 text/xml notificationsResponse with Ack true."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.content == render_ack()
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{{{SOAPENV}}}Envelope"
    ack = root.find(f"{{{SOAPENV}}}Body/{{{OUTBOUND}}}notificationsResponse/{{{OUTBOUND}}}Ack")
    assert ack is not None and ack.text == "true"
