"""receiver.agents: the agent list in crmId byte order, and single lookups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from receiver.agents import list_agents
from receiver.db import transaction
from receiver.models import Organization
from receiver.provisioning import apply_and_commit
from sf_metadata.errors import OrganizationNotFound
from sf_metadata.ids import canonical_id
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# 15-character ids differing only in case sort differently by bytes and by locale
IDS = [
    canonical_id(x)
    for x in (
        "005zz0000000001",
        "005AA0000000001",
        "005aa0000000001",
        "005Zz0000000001",
        "00500000000000b",
        "00500000000000B",
    )
]


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    return o


def test_list_is_sorted_by_crm_id_in_byte_order(engine: Engine, org: Organization) -> None:
    notes = tuple(
        Notification(next_id("04l"), "User", crm, make_user_fields(Username=f"u{i}@acme.com"))
        for i, crm in enumerate(IDS)
    )
    msg = OutboundMessage(org.salesforce_org_id, None, None, None, notes)
    apply_and_commit(engine, organization=org.id, message=msg, now=T0)
    with transaction(engine, read_only=True) as session:
        listed = [a.crm_id for a in list_agents(session, organization_id=org.id)]
    assert listed == sorted(IDS, key=lambda s: s.encode("ascii"))
    assert len(set(listed)) == len(IDS)


def test_unknown_organization(engine: Engine) -> None:
    with transaction(engine, read_only=True) as session:
        with pytest.raises(OrganizationNotFound):
            list_agents(session, organization_id="ghost")


def test_empty_organization_has_no_agents(engine: Engine, org: Organization) -> None:
    with transaction(engine, read_only=True) as session:
        assert list_agents(session, organization_id=org.id) == []
