"""receiver.organizations: registration, validation, tokens, webhook URL, JSON."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine

from receiver.db import transaction
from receiver.organizations import (
    add_organization,
    get_organization,
    list_organizations,
    organization_json,
    reveal_token,
    rotate_token,
    set_enabled,
    update_organization,
    validate_organization_name,
    verify_token,
    webhook_url,
)
from sf_metadata.errors import (
    CredentialsError,
    InvalidOrganizationName,
    InvalidSalesforceId,
    OrganizationExists,
    OrganizationNotFound,
    Setting,
    UsageError,
)
from tests.factories import sf_id

ORG_18 = sf_id("00D", 7)
ORG_15 = ORG_18[:15]


@pytest.mark.parametrize("name", ["a", "demo", "acme-uat", "0rg", "a" * 63, "a-", "9-9"])
def test_valid_organization_names(name: str) -> None:
    assert validate_organization_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-a", "Acme", "a_b", "a" * 64, "a.b", "a b", "ünï", "a/b", "a\n"]
)
def test_invalid_organization_names(name: str) -> None:
    with pytest.raises(InvalidOrganizationName, match="1 to 63 lowercase"):
        validate_organization_name(name)


def test_add_registers_a_disabled_org_with_an_18_char_id(
    engine: Engine, key: bytes, now: datetime
) -> None:
    with transaction(engine) as session:
        org, token = add_organization(
            session, name="acme", salesforce_org_id=ORG_15, key=key, now=now
        )
    assert org.salesforce_org_id == ORG_18
    assert org.enabled is False
    assert org.base_url == "http://127.0.0.1:8000"
    with transaction(engine) as session:
        stored = get_organization(session, "acme")
        assert verify_token(stored, token)
        assert token not in (stored.token_hash, stored.token_encrypted)
        assert reveal_token(stored, key) == token
        assert stored.created_at == now


def test_wrong_suffix_org_id_is_canonicalised(engine: Engine, key: bytes) -> None:
    wrong = ORG_15 + ("AAA" if ORG_18[15:] != "AAA" else "BBB")
    with transaction(engine) as session:
        org, _ = add_organization(session, name="acme", salesforce_org_id=wrong, key=key)
    assert org.salesforce_org_id == ORG_18


@pytest.mark.parametrize("bad", [sf_id("005", 1), "00D123", "00D" + "!" * 12, ""])
def test_add_refuses_a_non_org_id(engine: Engine, key: bytes, bad: str) -> None:
    with pytest.raises(InvalidSalesforceId, match="Salesforce org id") as caught:
        with transaction(engine) as session:
            add_organization(session, name="acme", salesforce_org_id=bad, key=key)
    assert caught.value.setting is Setting.SALESFORCE_ORG_ID
    with transaction(engine) as session:
        assert list_organizations(session) == []


def test_add_twice_is_organization_exists(engine: Engine, key: bytes) -> None:
    with transaction(engine) as session:
        add_organization(session, name="acme", salesforce_org_id=ORG_18, key=key)
    with pytest.raises(OrganizationExists, match="acme"):
        with transaction(engine) as session:
            add_organization(session, name="acme", salesforce_org_id=ORG_18, key=key)


@pytest.mark.parametrize("base", ["ftp://x", "127.0.0.1:8000", "https://x/?q=1", "", "https://"])
def test_bad_base_url_is_a_usage_error(engine: Engine, key: bytes, base: str) -> None:
    with pytest.raises(UsageError, match="base URL") as caught:
        with transaction(engine) as session:
            add_organization(session, name="acme", salesforce_org_id=ORG_18, key=key, base_url=base)
    assert caught.value.setting is Setting.BASE_URL and "--" not in caught.value.message


def test_webhook_url_and_json(engine: Engine, key: bytes, now: datetime) -> None:
    with transaction(engine) as session:
        org, token = add_organization(
            session,
            name="acme",
            salesforce_org_id=ORG_18,
            key=key,
            base_url="https://provision.example.com/",
            now=now,
        )
        url = webhook_url(org, token)
        assert url == (
            "https://provision.example.com/v2/features/agent-auto-provision/organizations/acme"
            f"/integrations/provider/webhook?token={token}"
        )
        assert organization_json(org, key, details=False) == {
            "organization": "acme",
            "salesforceOrgId": ORG_18,
            "webhookUrl": url,
            "enabled": False,
        }
        assert organization_json(org, key) == {
            "organization": "acme",
            "salesforceOrgId": ORG_18,
            "webhookUrl": url,
            "enabled": False,
            "baseUrl": "https://provision.example.com",
            "createdAt": "2026-11-29T12:00:00Z",
        }


def test_enable_disable_update_and_list(engine: Engine, key: bytes, now: datetime) -> None:
    later = now + timedelta(hours=1)
    with transaction(engine) as session:
        add_organization(session, name="zeta", salesforce_org_id=ORG_18, key=key, now=now)
        add_organization(session, name="acme", salesforce_org_id=ORG_18, key=key, now=now)
    with transaction(engine) as session:
        assert set_enabled(session, name="acme", enabled=True, now=later).enabled
        new_id = sf_id("00D", 8)
        updated = update_organization(
            session, name="acme", base_url="https://b.example", salesforce_org_id=new_id[:15]
        )
        assert updated.salesforce_org_id == new_id and updated.base_url == "https://b.example"
    with transaction(engine) as session:
        orgs = list_organizations(session)
        assert [o.id for o in orgs] == ["acme", "zeta"]
        assert orgs[0].enabled and not orgs[1].enabled
        assert orgs[1].updated_at == now
        set_enabled(session, name="acme", enabled=False)
    with transaction(engine) as session:
        assert not get_organization(session, "acme").enabled


def test_rotate_token_invalidates_the_old_one(engine: Engine, key: bytes) -> None:
    with transaction(engine) as session:
        _, old = add_organization(session, name="acme", salesforce_org_id=ORG_18, key=key)
    with transaction(engine) as session:
        new = rotate_token(session, name="acme", key=key)
    assert new != old
    with transaction(engine) as session:
        org = get_organization(session, "acme")
        assert verify_token(org, new) and not verify_token(org, old)
        assert reveal_token(org, key) == new


def test_unknown_organization_is_not_found(engine: Engine, key: bytes) -> None:
    with transaction(engine) as session:
        for call in (
            lambda: get_organization(session, "nope"),
            lambda: set_enabled(session, name="nope", enabled=True),
            lambda: update_organization(session, name="nope", base_url="https://x"),
            lambda: rotate_token(session, name="nope", key=key),
        ):
            with pytest.raises(OrganizationNotFound, match="'nope' is not registered") as caught:
                call()
            assert "agent-provision" not in caught.value.message  # the CLI adds its hint


def test_lost_key_cannot_reveal_but_still_verifies(engine: Engine, key: bytes) -> None:
    with transaction(engine) as session:
        org, token = add_organization(session, name="acme", salesforce_org_id=ORG_18, key=key)
    other = Fernet.generate_key()
    assert verify_token(org, token)
    with pytest.raises(CredentialsError):
        reveal_token(org, other)
    with pytest.raises(CredentialsError):
        organization_json(org, other)


def test_organization_rows_hold_no_plain_token(engine: Engine, key: bytes) -> None:
    with transaction(engine) as session:
        _, token = add_organization(session, name="acme", salesforce_org_id=ORG_18, key=key)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM organization").all()
    assert token not in repr(rows)
