"""The admin JSON API and the sessions API (CONTRACT section 3), on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from receiver.app import create_app
from receiver.db import transaction
from receiver.organizations import set_enabled, webhook_path
from receiver.sessions import EndedSession, SessionHooks
from receiver.settings import Settings
from sf_metadata.ids import to_15
from tests.conftest import MakeOrganization
from tests.factories import make_notification, make_outbound_message, sf_id
from tests.receiver._harness import NOW, TestClient

ADMIN = "admin-secret-for-tests"
AUTH = {"authorization": f"Bearer {ADMIN}"}


@dataclass
class Admin:
    client: TestClient
    engine: Engine
    name: str
    token: str
    salesforce_org_id: str
    ended: list[EndedSession]

    def deliver(self, *notifications: dict[str, Any]) -> None:
        body = make_outbound_message(list(notifications), organization_id=self.salesforce_org_id)
        response = self.client.post(
            webhook_path(self.name), params={"token": self.token}, content=body
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def admin(
    engine: Engine, database_url: str, make_organization: MakeOrganization
) -> Iterator[Admin]:
    with transaction(engine) as session:
        org, token = make_organization(session)
        name, sf_org = org.id, org.salesforce_org_id
    hooks = SessionHooks()
    ended: list[EndedSession] = []
    hooks.on_session_ended(lambda *args: ended.append(EndedSession(*args)))
    settings = Settings(database_url=database_url, admin_token=SecretStr(ADMIN))
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW, hooks=hooks)) as client:
        yield Admin(client, engine, name, token, sf_org, ended)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": ADMIN},
        {"authorization": f"Basic {ADMIN}"},
    ],
)
def test_missing_or_wrong_bearer_token_is_401(admin: Admin, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", f"/v2/organizations/{admin.name}/users"),
        ("GET", f"/v2/organizations/{admin.name}/provisioning-log"),
        ("POST", f"/v2/organizations/{admin.name}/users/{sf_id('005', 1)}/sessions"),
        ("GET", "/v2/sessions/abc"),
        ("DELETE", "/v2/sessions/abc"),
    ]:
        response = admin.client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert "error" in response.json()


def test_no_admin_token_configured_is_401_even_with_a_bearer(
    engine: Engine, database_url: str
) -> None:
    settings = Settings(database_url=database_url, admin_token=None)
    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.get("/v2/organizations/x/users", headers={"authorization": "Bearer "})
        assert response.status_code == 401
        response = client.get("/v2/organizations/x/users", headers=AUTH)
        assert response.status_code == 401


def test_users_lists_agents_sorted_by_crm_id(admin: Admin) -> None:
    ids = [sf_id("005", 30), sf_id("005", 10), sf_id("005", 20)]
    admin.deliver(*[make_notification(user_id=i) for i in ids])
    response = admin.client.get(f"/v2/organizations/{admin.name}/users", headers=AUTH)
    assert response.status_code == 200
    agents = response.json()
    assert [a["crmId"] for a in agents] == sorted(ids)
    assert list(agents[0]) == [
        "username",
        "crmId",
        "crmUser",
        "name",
        "pictureUrl",
        "disabled",
        "inboundEnabled",
        "phoneNumbers",
        "crm",
    ]


def test_unknown_organization_is_404(admin: Admin) -> None:
    response = admin.client.get("/v2/organizations/nope/users", headers=AUTH)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]
    response = admin.client.get("/v2/organizations/nope/provisioning-log", headers=AUTH)
    assert response.status_code == 404


def test_provisioning_log_is_paged_newest_first(admin: Admin) -> None:
    for _ in range(3):
        admin.deliver(make_notification())
    base = f"/v2/organizations/{admin.name}/provisioning-log"
    first = admin.client.get(base, params={"limit": 2}, headers=AUTH).json()
    assert len(first["messages"]) == 2
    assert first["messages"][0]["id"] > first["messages"][1]["id"]
    assert first["messages"][0]["notifications"][0]["action"] == "created"
    second = admin.client.get(
        base, params={"limit": 2, "before": first["nextBeforeId"]}, headers=AUTH
    ).json()
    assert len(second["messages"]) == 1
    assert second["nextBeforeId"] is None


@pytest.mark.parametrize("params", [{"limit": "x"}, {"limit": "0"}, {"before": "-1"}])
def test_provisioning_log_bad_paging_is_400(admin: Admin, params: dict[str, str]) -> None:
    response = admin.client.get(
        f"/v2/organizations/{admin.name}/provisioning-log", params=params, headers=AUTH
    )
    assert response.status_code == 400
    assert "query parameter" in response.json()["error"]


@pytest.mark.parametrize("before", ["2147483648", "99999999999999999999"])
def test_provisioning_log_before_beyond_the_id_range_is_400(admin: Admin, before: str) -> None:
    response = admin.client.get(
        f"/v2/organizations/{admin.name}/provisioning-log", params={"before": before}, headers=AUTH
    )
    assert response.status_code == 400
    assert "2147483647" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v2/organizations/a%00b/users"),
        ("get", "/v2/organizations/a%01b/provisioning-log"),
        ("post", "/v2/organizations/{name}/users/005%00/sessions"),
        ("get", "/v2/sessions/a%00b"),
        ("delete", "/v2/sessions/a%7Fb"),
    ],
)
def test_control_character_in_a_path_parameter_is_unknown(
    admin: Admin, method: str, path: str
) -> None:
    response = getattr(admin.client, method)(path.format(name=admin.name), headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"].startswith("no such ")


@pytest.mark.parametrize("form", ["18", "15"])
def test_session_lifecycle(admin: Admin, form: str) -> None:
    user = sf_id("005", 77)
    admin.deliver(make_notification(user_id=user))
    crm_id = to_15(user) if form == "15" else user
    started = admin.client.post(
        f"/v2/organizations/{admin.name}/users/{crm_id}/sessions", headers=AUTH
    )
    assert started.status_code == 201
    session_id = started.json()["sessionId"]
    assert admin.client.get(f"/v2/sessions/{session_id}", headers=AUTH).status_code == 200
    assert admin.client.delete(f"/v2/sessions/{session_id}", headers=AUTH).status_code == 204
    assert admin.client.get(f"/v2/sessions/{session_id}", headers=AUTH).status_code == 404
    assert [e.session_id for e in admin.ended] == [session_id]
    assert admin.client.delete(f"/v2/sessions/{session_id}", headers=AUTH).status_code == 204


def test_session_for_unprovisioned_agent_is_404(admin: Admin) -> None:
    response = admin.client.post(
        f"/v2/organizations/{admin.name}/users/{sf_id('005', 999)}/sessions", headers=AUTH
    )
    assert response.status_code == 404
    assert admin.client.get("/v2/sessions/unknown", headers=AUTH).status_code == 404


@pytest.mark.parametrize("crm_id", ["not-an-id", "005ABC", sf_id("001", 5)])
def test_session_for_a_malformed_crm_id_is_400(admin: Admin, crm_id: str) -> None:
    response = admin.client.post(
        f"/v2/organizations/{admin.name}/users/{crm_id}/sessions", headers=AUTH
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("crmId: ")


def test_session_for_disabled_agent_is_403(admin: Admin) -> None:
    user = sf_id("005", 78)
    admin.deliver(make_notification(user_id=user, CallCenterId=None))
    response = admin.client.post(
        f"/v2/organizations/{admin.name}/users/{user}/sessions", headers=AUTH
    )
    assert response.status_code == 403
    assert "disabled" in response.json()["error"]


def test_deprovisioning_ends_the_agents_sessions(admin: Admin) -> None:
    user = sf_id("005", 79)
    admin.deliver(make_notification(user_id=user, SystemModstamp="2026-11-20T10:00:00.000Z"))
    session_id = admin.client.post(
        f"/v2/organizations/{admin.name}/users/{user}/sessions", headers=AUTH
    ).json()["sessionId"]
    admin.deliver(
        make_notification(user_id=user, IsActive="false", SystemModstamp="2026-11-20T11:00:00.000Z")
    )
    assert admin.client.get(f"/v2/sessions/{session_id}", headers=AUTH).status_code == 404
    assert [e.session_id for e in admin.ended] == [session_id]


def test_session_in_a_disabled_feature_org_still_answers(admin: Admin) -> None:
    user = sf_id("005", 80)
    admin.deliver(make_notification(user_id=user))
    with transaction(admin.engine) as session:
        set_enabled(session, name=admin.name, enabled=False)
    response = admin.client.post(
        f"/v2/organizations/{admin.name}/users/{user}/sessions", headers=AUTH
    )
    assert response.status_code == 201
