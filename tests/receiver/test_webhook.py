"""The webhook route: every row of CONTRACT section 3's table, in order, and every bad
input of issue 2, on SQLite and PostgreSQL (``database_url`` fixture), in-process with
Starlette's TestClient."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlmodel import select

from receiver.db import transaction
from receiver.models import ProcessedNotification
from receiver.organizations import set_enabled, webhook_path
from sf_metadata.ids import to_15
from tests.conftest import org_sf_id
from tests.factories import (
    OMIT,
    make_notification,
    sf_id,
)
from tests.receiver._harness import MakeReceiver, Receiver, assert_ack, fault_string

# --- the table, row by row, in order ------------------------------------------------------


def test_unknown_organization_is_404_before_anything_else(receiver: Receiver) -> None:
    body = b"<not even xml" * 10
    response = receiver.post(body, name="no-such-org", token=None)
    assert response.status_code == 404
    assert "no-such-org is not registered" in fault_string(response)
    assert receiver.log() == []


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_missing_or_wrong_token_is_401_and_not_logged(
    receiver: Receiver, token: str | None
) -> None:
    response = receiver.post(b"<not xml", token=token)
    assert response.status_code == 401
    assert "token" in fault_string(response)
    assert receiver.log() == []
    assert receiver.agents() == {}


def test_token_of_another_organization_is_401(make_receiver: MakeReceiver) -> None:
    first, second = make_receiver(), make_receiver()
    response = first.post(first.message(make_notification()), token=second.token)
    assert response.status_code == 401


def test_a_repeated_token_parameter_is_401_even_with_the_right_one(receiver: Receiver) -> None:
    url = webhook_path(receiver.name)
    body = receiver.message(make_notification())
    for params in (
        [("token", "wrong"), ("token", receiver.token)],
        [("token", receiver.token), ("token", receiver.token)],
    ):
        response = receiver.client.post(
            url, params=params, content=body, headers={"content-type": "text/xml; charset=UTF-8"}
        )
        assert response.status_code == 401
    assert receiver.agents() == {}


def test_body_over_the_limit_is_413_and_logged_as_rejected(make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(max_body_bytes=4096)
    body = receiver.message(*[make_notification() for _ in range(10)])
    assert len(body) > 4096
    response = receiver.post(body)
    assert response.status_code == 413
    assert "4096 bytes" in fault_string(response)
    assert receiver.agents() == {}
    [(message, events)] = receiver.log()
    assert message.outcome == "rejected" and events == []


def test_chunked_body_over_the_limit_is_413_without_content_length(
    make_receiver: MakeReceiver,
) -> None:
    receiver = make_receiver(max_body_bytes=4096)
    body = receiver.message(*[make_notification() for _ in range(10)])

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    response = receiver.client.post(
        webhook_path(receiver.name), params={"token": receiver.token}, content=chunks()
    )
    assert response.status_code == 413
    assert receiver.agents() == {}


def test_body_at_the_limit_is_taken(make_receiver: MakeReceiver) -> None:
    probe = make_receiver()
    body = probe.message(make_notification())
    receiver = make_receiver(max_body_bytes=len(body) + 200)
    assert_ack(receiver.post(receiver.message(make_notification())))


def test_wrong_token_wins_over_a_large_body(make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(max_body_bytes=100)
    response = receiver.post(b"x" * 1000, token="wrong")
    assert response.status_code == 401


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&lol3;</OrganizationId>
</notifications></soapenv:Body></soapenv:Envelope>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&xxe;</OrganizationId>
</notifications></soapenv:Body></soapenv:Envelope>"""

DTD_ONLY = b"""<?xml version="1.0"?>
<!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1:9/evil.dtd">
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body/>
</soapenv:Envelope>"""


def _bad_bodies(receiver: Receiver) -> dict[str, bytes]:
    good = receiver.message(make_notification())
    return {
        "billion laughs": BILLION_LAUGHS,
        "external entity": EXTERNAL_ENTITY,
        "dtd": DTD_ONLY,
        "truncated": good[: len(good) // 2],
        "empty body": b"",
        "non-soap json": b'{"OrganizationId": "00D"}',
        "non-soap xml": b"<html><body>hello</body></html>",
        "wrong envelope namespace": good.replace(
            b"http://schemas.xmlsoap.org/soap/envelope/", b"http://www.w3.org/2003/05/soap-envelope"
        ),
        "wrong outbound namespace": good.replace(
            b"http://soap.sforce.com/2005/09/outbound", b"http://soap.sforce.com/2005/09/inbound"
        ),
        "no OrganizationId": receiver.message(make_notification(), organization_id=OMIT),
        "invalid OrganizationId": receiver.message(
            make_notification(), organization_id="not-an-org-id"
        ),
        "101 notifications": receiver.message(*[make_notification() for _ in range(101)]),
    }


BAD_CASES = [
    "billion laughs",
    "external entity",
    "dtd",
    "truncated",
    "empty body",
    "non-soap json",
    "non-soap xml",
    "wrong envelope namespace",
    "wrong outbound namespace",
    "no OrganizationId",
    "invalid OrganizationId",
    "101 notifications",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_unacceptable_envelope_is_400_fault_recorded_nothing_applied(
    receiver: Receiver, case: str
) -> None:
    response = receiver.post(_bad_bodies(receiver)[case])
    assert response.status_code == 400, response.text
    text = fault_string(response)
    assert text.startswith("Not an acceptable Outbound Message")
    assert "root:" not in text  # no expanded file content
    assert receiver.agents() == {}
    [(message, events)] = receiver.log()
    assert message.outcome == "rejected"
    assert message.detail == text
    assert events == []


def test_exactly_100_notifications_are_taken(receiver: Receiver) -> None:
    assert_ack(receiver.post(receiver.message(*[make_notification() for _ in range(100)])))
    assert len(receiver.agents()) == 100


def test_organization_id_of_another_org_is_403(receiver: Receiver) -> None:
    other = org_sf_id(999_999)
    response = receiver.post(receiver.message(make_notification(), organization_id=other))
    assert response.status_code == 403
    text = fault_string(response)
    assert (
        f"OrganizationId {other} is not the Salesforce org registered for organization "
        f"{receiver.name}" in text
    )
    assert receiver.agents() == {}
    [(message, _)] = receiver.log()
    assert message.outcome == "rejected" and message.notification_count == 1


def test_15_character_id_of_another_org_is_403(receiver: Receiver) -> None:
    other = to_15(org_sf_id(999_998))
    response = receiver.post(receiver.message(make_notification(), organization_id=other))
    assert response.status_code == 403


def test_organization_id_differing_only_in_case_is_403(receiver: Receiver) -> None:
    registered15 = to_15(receiver.salesforce_org_id)
    swapped = registered15[:3] + registered15[3:].swapcase()
    assert swapped != registered15
    response = receiver.post(receiver.message(make_notification(), organization_id=swapped))
    assert response.status_code == 403


@pytest.mark.parametrize("form", ["15", "18"])
def test_own_organization_id_in_15_or_18_characters_is_taken(receiver: Receiver, form: str) -> None:
    org_id = to_15(receiver.salesforce_org_id) if form == "15" else receiver.salesforce_org_id
    assert_ack(receiver.post(receiver.message(make_notification(), organization_id=org_id)))
    assert len(receiver.agents()) == 1


# --- 503: the store goes away in the middle of a request ----------------------------------


def _fail_on(engine: Engine, prefix: str) -> Callable[..., None]:
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix):
            raise exc.OperationalError(statement, {}, Exception("server closed the connection"))

    event.listen(engine, "before_cursor_execute", before)
    return before


@pytest.mark.parametrize(
    "failing", ["INSERT INTO PROVISIONING_EVENT", "INSERT INTO PROCESSED_NOTIFICATION"]
)
def test_store_failure_mid_request_is_503_nothing_applied_then_retry_succeeds(
    receiver: Receiver, failing: str
) -> None:
    body = receiver.message(make_notification(), make_notification(), make_notification())
    hook = _fail_on(receiver.engine, failing)
    try:
        response = receiver.post(body)
    finally:
        event.remove(receiver.engine, "before_cursor_execute", hook)
    assert response.status_code == 503
    assert "unavailable" in fault_string(response)
    assert receiver.agents() == {}
    assert receiver.log() == []
    with transaction(receiver.engine) as session:
        assert list(session.exec(select(ProcessedNotification))) == []

    assert_ack(receiver.post(body))
    assert len(receiver.agents()) == 3
    assert receiver.actions() == ["created"] * 3
    assert_ack(receiver.post(body))
    assert receiver.actions() == ["duplicate"] * 3


def test_store_unavailable_at_the_organization_lookup_is_503(receiver: Receiver) -> None:
    hook = _fail_on(receiver.engine, "SELECT")
    try:
        response = receiver.post(receiver.message(make_notification()))
    finally:
        event.remove(receiver.engine, "before_cursor_execute", hook)
    assert response.status_code == 503


# --- 200: processed, ignored, empty --------------------------------------------------------


def test_valid_message_is_applied_then_acknowledged(receiver: Receiver) -> None:
    user = sf_id("005", 1001)
    response = receiver.post(
        receiver.message(
            make_notification(user_id=user, Username="ada@acme.com", Name="Ada Lovelace")
        )
    )
    assert_ack(response)
    agent = receiver.agents()[user]
    assert agent.data["username"] == "ada@acme.com"
    assert agent.data["name"] == "Ada Lovelace"
    assert agent.data["disabled"] is False
    [(message, events)] = receiver.log()
    assert message.outcome == "processed"
    assert [e.action for e in events] == ["created"]


def test_empty_notifications_are_acknowledged(receiver: Receiver) -> None:
    assert_ack(receiver.post(receiver.message()))
    [(message, events)] = receiver.log()
    assert message.notification_count == 0 and events == []


def test_feature_disabled_is_acknowledged_and_ignored(make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(enabled=False)
    assert_ack(receiver.post(receiver.message(make_notification(), make_notification())))
    assert receiver.agents() == {}
    assert receiver.actions() == ["ignored", "ignored"]


def test_enabling_later_applies_new_messages(make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(enabled=False)
    assert_ack(receiver.post(receiver.message(make_notification())))
    with transaction(receiver.engine) as session:
        set_enabled(session, name=receiver.name, enabled=True)
    assert_ack(receiver.post(receiver.message(make_notification())))
    assert len(receiver.agents()) == 1


def test_non_user_sobject_is_ignored(receiver: Receiver) -> None:
    contact = make_notification(sobject_type="Contact", user_id=sf_id("003", 5), LastName="X")
    user = make_notification()
    assert_ack(receiver.post(receiver.message(contact, user)))
    assert receiver.actions() == ["ignored", "created"]
    assert len(receiver.agents()) == 1


def test_notification_without_sf_id_fails_others_apply(receiver: Receiver) -> None:
    assert_ack(
        receiver.post(receiver.message(make_notification(user_id=OMIT), make_notification()))
    )
    assert receiver.actions() == ["failed", "created"]
    events = receiver.log()[-1][1]
    assert "sf:Id" in events[0].reason


def test_notification_without_notification_id_is_acknowledged(receiver: Receiver) -> None:
    assert_ack(receiver.post(receiver.message(make_notification(notification_id=OMIT))))
    [(message, events)] = receiver.log()
    assert message.notification_count == 1 and len(events) == 1


@pytest.mark.parametrize("bad_id", ["not-an-id", "005abc", "001Ab0000000001AAA"])
def test_invalid_user_id_fails_others_apply(receiver: Receiver, bad_id: str) -> None:
    assert_ack(
        receiver.post(receiver.message(make_notification(user_id=bad_id), make_notification()))
    )
    assert receiver.actions() == ["failed", "created"]
    assert len(receiver.agents()) == 1


def test_without_is_active_fails(receiver: Receiver) -> None:
    assert_ack(receiver.post(receiver.message(make_notification(IsActive=None))))
    assert receiver.actions() == ["failed"]
    assert receiver.agents() == {}


def test_duplicate_delivery_is_applied_once(receiver: Receiver) -> None:
    user = sf_id("005", 2001)
    body = receiver.message(make_notification(user_id=user, Name="First"))
    assert_ack(receiver.post(body))
    assert_ack(receiver.post(body))
    assert receiver.actions() == ["duplicate"]
    assert receiver.agents()[user].data["name"] == "First"


def test_older_message_after_a_newer_one_is_stale(receiver: Receiver) -> None:
    user = sf_id("005", 3001)
    newer = make_notification(user_id=user, Name="Newer", SystemModstamp="2026-11-20T12:00:00.000Z")
    older = make_notification(user_id=user, Name="Older", SystemModstamp="2026-11-20T11:00:00.000Z")
    assert_ack(receiver.post(receiver.message(newer)))
    assert_ack(receiver.post(receiver.message(older)))
    assert receiver.actions() == ["stale"]
    assert receiver.agents()[user].data["name"] == "Newer"


def test_deactivate_then_reactivate_restores_the_same_agent(receiver: Receiver) -> None:
    user = sf_id("005", 4001)
    stamps = ["2026-11-20T10:00:00.000Z", "2026-11-20T11:00:00.000Z", "2026-11-20T12:00:00.000Z"]
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, Username="rosa@acme.com", SystemModstamp=stamps[0])
            )
        )
    )
    agent_id = receiver.agents()[user].id
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user,
                    Username="rosa@acme.com",
                    IsActive="false",
                    SystemModstamp=stamps[1],
                )
            )
        )
    )
    assert receiver.actions() == ["deprovisioned"]
    assert user not in receiver.agents()
    # a late retry of the older "active" change cannot bring it back
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, Username="rosa@acme.com", SystemModstamp=stamps[0])
            )
        )
    )
    assert receiver.actions() == ["stale"]
    assert user not in receiver.agents()
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, Username="rosa@acme.com", SystemModstamp=stamps[2])
            )
        )
    )
    assert receiver.actions() == ["restored"]
    assert receiver.agents()[user].id == agent_id


def test_username_collision_fails_the_second_user(receiver: Receiver) -> None:
    first, second = sf_id("005", 5001), sf_id("005", 5002)
    assert_ack(
        receiver.post(receiver.message(make_notification(user_id=first, Username="same@acme.com")))
    )
    assert_ack(
        receiver.post(receiver.message(make_notification(user_id=second, Username="SAME@acme.com")))
    )
    assert receiver.actions() == ["failed"]
    agents = receiver.agents()
    assert set(agents) == {first}
    assert agents[first].data["username"] == "same@acme.com"


def test_one_message_updating_one_user_twice_keeps_the_newest(receiver: Receiver) -> None:
    user = sf_id("005", 6001)
    newer = make_notification(user_id=user, Name="Newer", SystemModstamp="2026-11-20T12:00:00.000Z")
    older = make_notification(user_id=user, Name="Older", SystemModstamp="2026-11-20T11:00:00.000Z")
    assert_ack(receiver.post(receiver.message(newer, older)))
    assert receiver.agents()[user].data["name"] == "Newer"


def test_real_world_variants_are_taken(receiver: Receiver) -> None:
    body = receiver.message(
        make_notification(Name="Jürgen Groß & Søn"),
        bom=True,
        declaration=False,
        compact=True,
        prefixes={"soapenv": "s", "outbound": "out", "sf": "q"},
    )
    assert_ack(receiver.post(body))
    [agent] = receiver.agents().values()
    assert agent.data["name"] == "Jürgen Groß & Søn"


# --- secrets stay out of logs ------------------------------------------------------------


def test_token_and_session_id_never_reach_logs_or_faults(
    make_receiver: MakeReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = make_receiver(max_body_bytes=20_000)
    session_id = receiver.salesforce_org_id[:15] + "!AQ4AQFakeSessionSecretValue"
    other = org_sf_id(888_888)
    responses = [
        receiver.post(receiver.message(make_notification(), session_id=session_id)),
        receiver.post(
            receiver.message(make_notification(), session_id=session_id, organization_id=other)
        ),
        receiver.post(b"<x/>"),
        receiver.post(b"<x/>", token=receiver.token + "x"),
        receiver.post(
            receiver.message(*[make_notification() for _ in range(40)], session_id=session_id)
        ),
    ]
    assert [r.status_code for r in responses] == [200, 403, 400, 401, 413]
    for r in responses:
        assert receiver.token not in r.text and session_id not in r.text
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name == "agent_provision.receiver" for r in ours)
    for record in ours:  # the test client's own request log is not the process log
        assert receiver.token not in record.getMessage()
        assert session_id not in record.getMessage()
    for message, events in receiver.log():
        assert session_id not in (message.detail or "")
        assert all(session_id not in e.reason for e in events)


def test_get_on_the_webhook_is_a_harmless_405(receiver: Receiver) -> None:
    response = receiver.client.get(webhook_path(receiver.name), params={"token": receiver.token})
    assert response.status_code == 405
    assert receiver.log() == []


def test_organization_name_with_control_characters_cannot_forge_log_lines(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent_provision.receiver")
    response = receiver.client.post(
        "/v2/features/agent-auto-provision/organizations/x%0AINFO%20forged"
        "/integrations/provider/webhook",
        content=b"<x/>",
    )
    assert response.status_code == 404
    messages = [r.getMessage() for r in caplog.records if r.name == "agent_provision.receiver"]
    assert messages and all("\n" not in m for m in messages)


def test_unexpected_error_is_a_500_fault_without_ack(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import receiver.webhook as webhook_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(webhook_module, "apply_message", broken)
    response = receiver.post(receiver.message(make_notification()))
    assert response.status_code == 500
    assert "Internal error" in fault_string(response)
    assert receiver.agents() == {}


def test_concurrent_deliveries_for_one_user_lose_no_update(receiver: Receiver) -> None:
    from concurrent.futures import ThreadPoolExecutor

    user = sf_id("005", 7001)
    bodies = [
        receiver.message(
            make_notification(
                user_id=user,
                Username="conc@acme.com",
                Name=f"Version {i:02d}",
                SystemModstamp=f"2026-11-20T10:{i:02d}:00.000Z",
            )
        )
        for i in range(12)
    ]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(receiver.post, reversed(bodies)))
    assert [r.status_code for r in responses] == [200] * 12
    agents = receiver.agents()
    assert list(agents) == [user]
    assert agents[user].data["name"] == "Version 11"
    actions = sorted(e.action for _, events in receiver.log() for e in events)
    assert actions.count("created") == 1
    assert set(actions) <= {"created", "updated", "stale"}
