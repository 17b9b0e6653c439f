"""receiver.provisioning_log: recording and paging the provisioning log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from receiver.db import transaction
from receiver.models import Organization
from receiver.outcomes import MessageOutcome
from receiver.provisioning import apply_and_commit
from receiver.provisioning_log import list_messages, record_message
from sf_metadata.outbound import Notification, OutboundMessage
from tests.factories import make_user_fields, next_id, sf_id

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def org(engine: Engine, make_organization: Any) -> Organization:
    with transaction(engine) as session:
        o, _ = make_organization(session, name="acme")
    return o


def _apply(engine: Engine, org: Organization, *notes: Notification, at: datetime = T0) -> int:
    msg = OutboundMessage(
        organization_id=org.salesforce_org_id,
        action_id=sf_id("04k", 3),
        enterprise_url=None,
        partner_url=None,
        notifications=notes,
        session_id="SESSION-NEVER-LOGGED",
    )
    return apply_and_commit(engine, organization=org.id, message=msg, now=at).message_id


def _note(n: int, **fields: Any) -> Notification:
    return Notification(
        next_id("04l"),
        "User",
        sf_id("005", n),
        make_user_fields(Username=f"l{n}@acme.com", **fields),
    )


def test_messages_come_newest_first_with_their_notifications(
    engine: Engine, org: Organization
) -> None:
    nid_a = _note(1)
    first = _apply(engine, org, nid_a, _note(2, IsActive=None))
    second = _apply(engine, org, at=T0 + timedelta(minutes=1))
    with transaction(engine, read_only=True) as session:
        page = list_messages(session, organization_id=org.id)
    assert [m["id"] for m in page.messages] == [second, first]
    assert page.next_before_id is None
    newest, older = page.messages
    assert newest == {
        "id": second,
        "receivedAt": "2026-11-20T10:01:00Z",
        "outcome": "empty",
        "actionId": sf_id("04k", 3),
        "notificationCount": 0,
        "detail": "the message holds no notifications",
        "notifications": [],
    }
    assert older["outcome"] == "processed" and older["notificationCount"] == 2
    assert [(e["position"], e["action"], e["crmId"]) for e in older["notifications"]] == [
        (0, "created", sf_id("005", 1)),
        (1, "failed", sf_id("005", 2)),
    ]
    assert older["notifications"][0]["notificationId"] == nid_a.notification_id
    assert "IsActive" in older["notifications"][1]["reason"]
    text = json.dumps(page.to_json())
    assert "SESSION-NEVER-LOGGED" not in text


def test_paging_with_before_id(engine: Engine, org: Organization) -> None:
    ids = [_apply(engine, org, at=T0 + timedelta(minutes=i)) for i in range(5)]
    seen: list[int] = []
    before: int | None = None
    with transaction(engine, read_only=True) as session:
        while True:
            page = list_messages(session, organization_id=org.id, limit=2, before_id=before)
            seen += [m["id"] for m in page.messages]
            if page.next_before_id is None:
                break
            before = page.next_before_id
    assert seen == sorted(ids, reverse=True)


def test_other_organizations_are_not_listed(
    engine: Engine, org: Organization, make_organization: Any
) -> None:
    with transaction(engine) as session:
        other, _ = make_organization(session, name="other")
    _apply(engine, other, _note(1))
    with transaction(engine, read_only=True) as session:
        assert list_messages(session, organization_id=org.id).messages == []
        assert len(list_messages(session, organization_id="other").messages) == 1


def test_record_message_for_a_rejection(engine: Engine, org: Organization) -> None:
    with transaction(engine) as session:
        mid = record_message(
            session,
            organization_id=org.id,
            received_at=T0,
            outcome=MessageOutcome.REJECTED,
            detail="x" * 5000,
        )
    with transaction(engine, read_only=True) as session:
        (msg,) = list_messages(session, organization_id=org.id).messages
    assert msg["id"] == mid and msg["outcome"] == "rejected"
    assert len(msg["detail"]) == 1000 and msg["notifications"] == []


@pytest.mark.parametrize("limit, expected", [(0, 1), (-5, 1), (3, 3), (10_000, 4)])
def test_limit_is_clamped(engine: Engine, org: Organization, limit: int, expected: int) -> None:
    for i in range(4):
        _apply(engine, org, at=T0 + timedelta(minutes=i))
    with transaction(engine, read_only=True) as session:
        assert len(list_messages(session, organization_id=org.id, limit=limit).messages) == expected
