"""Adversarial tests of the receiver (CONTRACT sections 2 and 3): hostile XML, ids, org id
spoofing, token handling, body limits, mapping edge cases, lifecycle orderings, sessions and
the CLI's error lines.

The first group are regressions for defects found by attacking the code (all fixed; each
docstring says what went wrong and what is expected now). The others pin attacks that
are handled correctly and are not covered by ``test_webhook.py``. Each test asserts the
one right outcome; none measures wall-clock time. Everything runs in-process
(Starlette's TestClient or a raw ASGI call) on the ``database_url`` backends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import select

from receiver.cli import main
from receiver.db import transaction
from receiver.models import AgentSession
from receiver.organizations import webhook_path
from receiver.provisioning import apply_and_commit
from receiver.sessions import StartStatus, is_session_active, start_session
from sf_metadata.ids import to_15
from sf_metadata.soap import parse_outbound_message
from tests.conftest import org_sf_id
from tests.factories import NIL, make_notification, sf_id
from tests.receiver._harness import (
    ADMIN_TOKEN,
    NOW,
    SOAPENV,
    MakeReceiver,
    Receiver,
    assert_ack,
    fault_string,
)

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
T0, T1, T2, T3 = (f"2026-11-20T1{h}:00:00.000Z" for h in range(4))


@pytest.fixture
def receiver(make_receiver: MakeReceiver) -> Receiver:
    """Server exceptions become 500 answers (as in production) instead of raising here."""
    return make_receiver(raise_server_exceptions=False)


def assert_rejected_400(receiver: Receiver, response: Any) -> None:
    assert response.status_code == 400, response.text
    assert fault_string(response).startswith("Not an acceptable Outbound Message")
    message, events = receiver.log()[-1]
    assert message.outcome == "rejected" and events == []


# =========================================================================================
# Defects (regressions; they fail until fixed)
# =========================================================================================


def _two_agents(receiver: Receiver) -> tuple[str, str, dict[str, Any]]:
    """Agents A (a@acme.com) and B (b@acme.com); returns their ids and A's create."""
    a, b = sf_id("005", 81_001), sf_id("005", 81_002)
    create_a = make_notification(user_id=a, Username="a@acme.com", SystemModstamp=T0)
    assert_ack(
        receiver.post(
            receiver.message(
                create_a, make_notification(user_id=b, Username="b@acme.com", SystemModstamp=T0)
            )
        )
    )
    assert receiver.usernames() == {a: "a@acme.com", b: "b@acme.com"}
    return a, b, create_a


@pytest.mark.parametrize("trailing", ["stale", "failed", "duplicate"])
def test_username_handover_with_a_later_notification_of_the_releaser_applies(
    receiver: Receiver, trailing: str
) -> None:
    """A renames a@ -> z@, then B takes a@ (allowed: A released it earlier in the document),
    then one more notification about A follows (an older one, an undecidable one or a
    redelivered one). Once, the updates were written in the order of the LAST decision per
    user, so B's update ran before A's and hit the unique username index (IntegrityError,
    500 on every retry). Expected: Ack, A is z@, B is a@."""
    a, b, create_a = _two_agents(receiver)
    tail = {
        "stale": make_notification(user_id=a, Username="old@acme.com", SystemModstamp=T1),
        "failed": make_notification(user_id=a, IsActive="maybe", SystemModstamp=T3),
        "duplicate": create_a,
    }[trailing]
    response = receiver.post(
        receiver.message(
            make_notification(user_id=a, Username="z@acme.com", SystemModstamp=T2),
            make_notification(user_id=b, Username="a@acme.com", SystemModstamp=T2),
            tail,
        )
    )
    assert_ack(response)
    assert receiver.usernames() == {a: "z@acme.com", b: "a@acme.com"}
    assert receiver.actions()[:2] == ["updated", "updated"]
    assert receiver.actions()[2] == trailing


@pytest.mark.parametrize("field", ["SystemModstamp", "LastModifiedDate"])
@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"])
def test_out_of_range_stamp_fails_only_its_notification(
    receiver: Receiver, field: str, stamp: str
) -> None:
    """Converting an aware datetime at the edge of the range to UTC raises OverflowError;
    ``parse_stamp`` once caught only ValueError (500, retried forever). Expected: that
    notification fails with a reason naming the field; the others apply."""
    stamps = (
        {"SystemModstamp": stamp}
        if field == "SystemModstamp"
        else {"SystemModstamp": None, "LastModifiedDate": stamp}
    )
    response = receiver.post(receiver.message(make_notification(**stamps), make_notification()))
    assert_ack(response)
    assert receiver.actions() == ["failed", "created"]
    assert field in receiver.reasons()[0]
    assert len(receiver.agents()) == 1


def test_usernames_too_long_for_the_store_fail_only_their_notification(
    receiver: Receiver,
) -> None:
    """``agent.username``/``username_key`` are VARCHAR(320); once, an over-long username
    reached PostgreSQL (DataError, not transient: 500 forever; SQLite ignores VARCHAR
    lengths). Neither Username nor Email below is an address, so the Username is the
    username, and it is too long. Expected on both backends: Ack; those two fail with the
    reason, the third is created. (That an over-long value is never handed to
    email-validator is pinned by ``tests/sf_metadata/test_mapping.py``'s spy.)"""
    long_username = "a" * 300 + "@" + "b" * 60 + ".com"  # 365 characters: no address
    sharp_s = "\u00df" * 200 + "@acme"  # 205 characters, casefolds to 405; no address
    response = receiver.post(
        receiver.message(
            make_notification(Username=long_username, Email="not an e-mail"),
            make_notification(Username=sharp_s, Email=None),
            make_notification(),
        )
    )
    assert_ack(response)
    assert receiver.actions() == ["failed", "failed", "created"]
    assert all("320" in reason for reason in receiver.reasons()[:2])


def test_username_released_by_an_older_change_later_in_the_document(
    receiver: Receiver,
) -> None:
    """Salesforce usernames are unique, so B can only have taken a@ after A gave it up: A's
    rename (T1) is older than B's claim (T2), but it comes later in the document.
    ``plan_message`` once released usernames in document order, so B failed permanently
    although after this message nobody collides. Expected ("the most recent change is
    honored"): both apply."""
    a, b, _ = _two_agents(receiver)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=b, Username="a@acme.com", SystemModstamp=T2),
                make_notification(user_id=a, Username="z@acme.com", SystemModstamp=T1),
            )
        )
    )
    assert receiver.actions() == ["updated", "updated"]
    assert receiver.usernames() == {a: "z@acme.com", b: "a@acme.com"}


def test_unsupported_database_url_is_one_error_line(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONTRACT section 4: a failing command writes one line per problem naming what to fix.
    ``--database-url nosuch://x`` (or ``mysql://...`` without its driver) once escaped
    ``make_engine`` as NoSuchModuleError / ModuleNotFoundError (a traceback). Expected:
    exit 2 and one ``error: ...`` line, the CLI's hint naming ``--database-url``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENT_PROVISION_DATABASE_URL", raising=False)
    for url in ("nosuch://x", "mysql://user@127.0.0.1/db"):
        result = CliRunner().invoke(main, ["users", "demo", "--database-url", url])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            url,
            repr(result.exception),
        )
        assert result.exit_code == 2, (url, result.exit_code)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert "--database-url" in lines[0]


@pytest.mark.parametrize("before", ["2147483648", "9223372036854775808", "99999999999999999999"])
def test_provisioning_log_before_beyond_the_id_range_is_a_400(
    receiver: Receiver, before: str
) -> None:
    """SQLite cannot bind an integer above 2**63-1 (OverflowError) and PostgreSQL's INTEGER
    id column refuses anything above 2**31-1 (DataError); ``before`` once had no upper
    bound (a plain-text 500). Expected: 400 ``{"error": ...}``."""
    assert_ack(receiver.post(receiver.message(make_notification())))
    response = receiver.client.get(
        f"/v2/organizations/{receiver.name}/provisioning-log",
        params={"before": before},
        headers=ADMIN,
    )
    assert response.status_code == 400, response.text
    assert "before" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v2/organizations/a%00b/users"),
        ("get", "/v2/organizations/a%00b/provisioning-log"),
        ("get", "/v2/sessions/a%00b"),
        ("delete", "/v2/sessions/a%00b"),
    ],
)
def test_nul_in_an_admin_path_parameter_is_a_404(
    receiver: Receiver, method: str, path: str
) -> None:
    """PostgreSQL text cannot hold NUL (psycopg raises ValueError); the admin routes once
    handed the raw path parameter to the store (a plain-text 500). Expected: 404 JSON
    (no such organization / session) before the store is touched, the DELETE too."""
    response = getattr(receiver.client, method)(path, headers=ADMIN)
    assert response.status_code == 404, response.text
    assert response.json()["error"].startswith("no such ")


# =========================================================================================
# Hostile XML (handled: 400 fault or a correct Ack, never a 500)
# =========================================================================================


def test_declared_encodings_utf16_and_latin1_are_decoded(receiver: Receiver) -> None:
    user16, user_latin = sf_id("005", 82_001), sf_id("005", 82_002)
    utf16 = receiver.message(make_notification(user_id=user16, Name="Jürgen Groß"))
    latin = receiver.message(make_notification(user_id=user_latin, Name="Søren Ærø"))
    assert_ack(
        receiver.post(
            utf16.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
        )
    )
    assert_ack(
        receiver.post(
            latin.decode().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
        )
    )
    agents = receiver.agents()
    assert agents[user16].data["name"] == "Jürgen Groß"
    assert agents[user_latin].data["name"] == "Søren Ærø"


@pytest.mark.parametrize(
    "case",
    [
        "latin-1 bytes declared UTF-8",
        "UTF-32",
        "EBCDIC",
        "UTF-7",
        "BOM contradicts declaration",
        "trailing element",
        "trailing text",
        "trailing NUL",
        "whitespace before declaration",
        "deep nesting",
        "empty internal DTD subset",
        "character reference to NUL",
        "repeated field",
        "field in a foreign namespace",
        "field without namespace",
        "undeclared xsi:type prefix",
        "unprefixed xsi:type",
        "SOAP 1.2 envelope",
    ],
)
def test_hostile_xml_is_a_400_fault(receiver: Receiver, case: str) -> None:
    good = receiver.message(make_notification(Name="Jürgen"))
    text = good.decode()

    def declared(encoding: str, codec: str) -> bytes:
        return text.replace('encoding="UTF-8"', f'encoding="{encoding}"').encode(codec)

    body = {
        "latin-1 bytes declared UTF-8": text.encode("latin-1"),
        "UTF-32": declared("UTF-32", "utf-32"),
        "EBCDIC": declared("cp037", "cp037"),
        "UTF-7": declared("UTF-7", "utf-8"),
        "BOM contradicts declaration": b"\xef\xbb\xbf" + declared("UTF-16", "utf-8"),
        "trailing element": good + b"<x/>",
        "trailing text": good + b"junk",
        "trailing NUL": good + b"\x00",
        "whitespace before declaration": b"  " + good,
        "deep nesting": good.replace(b"<sf:Name>", b"<sf:Name>" + b"<a>" * 300 + b"</a>" * 300),
        "empty internal DTD subset": b'<?xml version="1.0"?><!DOCTYPE x []>'
        + good.split(b"?>", 1)[1],
        "character reference to NUL": good.replace(b"J\xc3\xbcrgen", b"J&#0;rgen"),
        "repeated field": good.replace(b"<sf:Name>", b"<sf:IsActive>false</sf:IsActive><sf:Name>"),
        "field in a foreign namespace": good.replace(
            b"<sf:Name>", b'<x:Foo__c xmlns:x="urn:evil">1</x:Foo__c><sf:Name>'
        ),
        "field without namespace": good.replace(
            b"<sf:Name>", b'<Foo__c xmlns="">1</Foo__c><sf:Name>'
        ),
        "undeclared xsi:type prefix": good.replace(b'xsi:type="sf:User"', b'xsi:type="zz:User"'),
        "unprefixed xsi:type": good.replace(b'xsi:type="sf:User"', b'xsi:type="User"'),
        "SOAP 1.2 envelope": good.replace(
            SOAPENV.encode(), b"http://www.w3.org/2003/05/soap-envelope"
        ),
    }[case]
    assert_rejected_400(receiver, receiver.post(body))
    assert receiver.agents() == {}


def test_harmless_xml_variants_are_taken(receiver: Receiver) -> None:
    """Trailing whitespace/comment/PI, a leading comment, a type prefix other than ``sf``
    bound to the enterprise namespace, CDATA, and comments / PIs inside a value."""
    users = [sf_id("005", 83_000 + i) for i in range(6)]
    n = [make_notification(user_id=u, Name="NAME") for u in users]
    bodies = [
        receiver.message(n[0]) + b"\n <!-- done --> <?pi x?>\n",
        b"<!-- hi -->" + receiver.message(n[1], declaration=False),
        receiver.message(n[2]).replace(
            b'xsi:type="sf:User"',
            b'xmlns:q="urn:sobject.enterprise.soap.sforce.com" xsi:type=" q:User "',
        ),
        receiver.message(n[3]).replace(b"<sf:Name>NAME", b"<sf:Name><![CDATA[A & <B>]]>"),
        receiver.message(n[4]).replace(b"<sf:Name>NAME", b"<sf:Name>Ada<!-- x --> Lovelace"),
        receiver.message(n[5]).replace(b"<sf:Name>NAME", b"<sf:Name>Ada<?p x?> Byron"),
    ]
    for body in bodies:
        assert_ack(receiver.post(body))
    names = {crm: a.data["name"] for crm, a in receiver.agents().items()}
    assert [names[u] for u in users] == [
        "NAME",
        "NAME",
        "NAME",
        "A & <B>",
        "Ada Lovelace",
        "Ada Byron",
    ]


def test_xsi_type_in_the_wrong_xsi_namespace_is_an_untyped_ignored_notification(
    receiver: Receiver,
) -> None:
    body = receiver.message(make_notification()).replace(
        b'xsi:type="sf:User"',
        b'xmlns:xsj="http://www.w3.org/1999/XMLSchema-instance" xsj:type="sf:User"',
    )
    assert_ack(receiver.post(body))
    assert receiver.actions() == ["ignored"]
    assert receiver.agents() == {}


def test_large_but_flat_documents_under_the_limit_are_taken(receiver: Receiver) -> None:
    """A 4 MB attribute and 200,000 empty header elements: taken (their parse time is a
    ``bench/`` figure, not asserted here)."""
    good = receiver.message(make_notification(), make_notification())
    for junk in (b'<X a="' + b"A" * 4_000_000 + b'"/>', b"<X/>" * 200_000):
        assert_ack(receiver.post(good.replace(b"<ActionId>", junk + b"<ActionId>")))
        good = receiver.message(make_notification())
    assert len(receiver.agents()) == 3  # both notifications of the first, one of the second


# =========================================================================================
# Organization id and token
# =========================================================================================


def test_organization_id_variants(receiver: Receiver) -> None:
    """First 15 characters, case-sensitive: a wrong or lower-case suffix and surrounding
    whitespace are the same org; a different case in the 15 is another org (403); a
    lower-case key prefix or a 16-character value is no org id at all (400)."""
    sf = receiver.salesforce_org_id
    for same in (sf[:15] + "ZZZ", sf[:15] + sf[15:].lower(), f"  {sf}\n", to_15(sf)):
        assert_ack(receiver.post(receiver.message(make_notification(), organization_id=same)))
    swapped = sf[:3] + sf[3:15].swapcase() + sf[15:]
    response = receiver.post(receiver.message(make_notification(), organization_id=swapped))
    assert response.status_code == 403
    assert receiver.log()[-1][0].outcome == "rejected"
    for bad in ("00d" + sf[3:], sf[:16], "005" + sf[3:]):
        response = receiver.post(receiver.message(make_notification(), organization_id=bad))
        assert_rejected_400(receiver, response)
    assert len(receiver.agents()) == 4


@pytest.mark.parametrize(
    "params",
    [
        lambda t: {"Token": t},
        lambda t: {"token": t + " "},
        lambda t: {"token": t + "\u200b"},
        lambda t: {"token": t.swapcase()},
        lambda t: {"token": t[:-1]},
        lambda t: {"tok": t},
        lambda t: [("token", t), ("token", "wrong")],
    ],
    ids=[
        "name-case",
        "trailing-space",
        "zero-width",
        "value-case",
        "prefix",
        "other-name",
        "repeated-last-wrong",
    ],
)
def test_token_variants_are_401_and_not_logged(
    receiver: Receiver, params: Callable[[str], Any]
) -> None:
    response = receiver.post(receiver.message(make_notification()), params=params(receiver.token))
    assert response.status_code == 401
    assert receiver.token not in response.text
    assert receiver.log() == [] and receiver.agents() == {}


def test_token_in_a_header_is_not_a_token(receiver: Receiver) -> None:
    response = receiver.post(
        receiver.message(make_notification()),
        params={},
        headers={"token": receiver.token, "authorization": f"Bearer {receiver.token}"},
    )
    assert response.status_code == 401


def test_rotated_token_stops_working(receiver: Receiver, key: bytes) -> None:
    from receiver.organizations import rotate_token

    with transaction(receiver.engine) as session:
        new = rotate_token(session, name=receiver.name, key=key)
    assert receiver.post(receiver.message(make_notification())).status_code == 401
    assert_ack(receiver.post(receiver.message(make_notification()), params={"token": new}))


# =========================================================================================
# Body size: Content-Length that lies, streamed bodies (raw ASGI, no HTTP client checks)
# =========================================================================================


def _asgi_post(
    receiver: Receiver, chunks: list[bytes], content_length: str | None, *, complete: bool = True
) -> tuple[int, bytes]:
    """POST ``chunks`` straight to the ASGI app; ``complete=False`` ends the stream with
    ``http.disconnect`` instead of a last chunk."""
    headers = [(b"content-type", b"text/xml")]
    if content_length is not None:
        headers.append((b"content-length", content_length.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": webhook_path(receiver.name),
        "raw_path": b"",
        "query_string": f"token={receiver.token}".encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "app": receiver.app,
    }
    pending = [
        {"type": "http.request", "body": c, "more_body": not complete or i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(receiver.app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def test_content_length_understating_the_body_cannot_pass_the_limit(
    make_receiver: MakeReceiver,
) -> None:
    receiver = make_receiver(max_body_bytes=4096, raise_server_exceptions=False)
    body = receiver.message(*[make_notification() for _ in range(10)])
    assert len(body) > 4096
    chunks = [body[i : i + 700] for i in range(0, len(body), 700)]
    for declared in ("100", "0", "-1", "abc", None):
        status, _ = _asgi_post(receiver, chunks, declared)
        assert status == 413, declared
    assert receiver.agents() == {}
    assert {m.outcome for m, _ in receiver.log()} == {"rejected"}


def test_content_length_overstating_is_413_before_reading(make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(max_body_bytes=4096, raise_server_exceptions=False)
    status, body = _asgi_post(receiver, [receiver.message(make_notification())], "999999999999")
    assert status == 413 and b"4096 bytes" in body


def test_body_that_stops_early_is_a_400_without_ack(receiver: Receiver) -> None:
    body = receiver.message(make_notification())
    status, answer = _asgi_post(
        receiver, [body[:200], body[200:400]], str(len(body)), complete=False
    )
    assert status == 400 and b"<Ack>" not in answer
    assert receiver.agents() == {}


# =========================================================================================
# Ids
# =========================================================================================


def test_user_id_forms_address_one_agent_and_case_variants_are_other_users(
    receiver: Receiver,
) -> None:
    user = sf_id("005", 84_001)
    other_case = user[:3] + user[3:15].swapcase()  # another (15-character) Salesforce id
    for i, form in enumerate(
        (user, user[:15], user[:15] + "ZZZ", user[:15] + user[15:].lower(), f" {user} ")
    ):
        assert_ack(
            receiver.post(
                receiver.message(
                    make_notification(
                        user_id=form,
                        Username="ids@acme.com",
                        SystemModstamp=f"2026-11-20T10:0{i}:00Z",
                    )
                )
            )
        )
    assert list(receiver.agents()) == [user]
    assert receiver.actions() == ["updated"]
    assert_ack(receiver.post(receiver.message(make_notification(user_id=other_case))))
    assert receiver.actions() == ["created"] and len(receiver.agents()) == 2


@pytest.mark.parametrize(
    "bad",
    [
        "00DAb0000000001",
        "003Ab0000000001AAA",
        "005Ab00000000-1",
        "005Ab000000000１",
        "005Ab00000000001",
        "",
    ],
)
def test_user_ids_that_are_not_user_ids_fail_alone(receiver: Receiver, bad: str) -> None:
    assert_ack(receiver.post(receiver.message(make_notification(user_id=bad), make_notification())))
    assert receiver.actions() == ["failed", "created"]


def test_related_ids_are_canonical_and_bad_ones_fail_the_notification(receiver: Receiver) -> None:
    cc = sf_id("04v", 9)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(CallCenterId=cc[:15], ProfileId=sf_id("00e", 9)[:15] + "zzz"),
                make_notification(UserRoleId="00E-bad"),
            )
        )
    )
    assert receiver.actions() == ["created", "failed"]
    assert "UserRoleId" in receiver.reasons()[1]
    [agent] = receiver.agents().values()
    assert agent.data["crm"]["callCenterId"] == cc
    assert agent.data["crm"]["profileId"] == sf_id("00e", 9)


def test_notification_id_in_15_or_18_characters_is_one_notification(receiver: Receiver) -> None:
    nid = sf_id("04l", 84_100)
    user = sf_id("005", 84_101)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, notification_id=nid[:15], Name="First")
            )
        )
    )
    for redelivery in (nid, nid[:15] + "ZZZ", nid[:15] + nid[15:].lower()):
        assert_ack(
            receiver.post(
                receiver.message(
                    make_notification(
                        user_id=user, notification_id=redelivery, Name="Changed", SystemModstamp=T3
                    )
                )
            )
        )
        assert receiver.actions() == ["duplicate"]
    assert receiver.agents()[user].data["name"] == "First"


# =========================================================================================
# Mapping edge cases through the wire
# =========================================================================================


def test_username_choice_and_name_fallbacks(receiver: Receiver) -> None:
    ids = [sf_id("005", 85_000 + i) for i in range(7)]
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=ids[0], Username="jdoe", Email="jdoe@acme.com"),
                make_notification(user_id=ids[1], Username="jane@acme.com.uat", Email="j@acme.com"),
                make_notification(
                    user_id=ids[2], Username="jane@acme.com.invalid", Email="jane@acme.com.invalid"
                ),
                make_notification(user_id=ids[3], Username="not valid", Email=None),
                make_notification(
                    user_id=ids[4],
                    Username="zoë@bücher.de",
                    Name="",
                    FirstName="Zoë",
                    LastName="Ünal",
                ),
                make_notification(user_id=ids[5], Name=NIL, FirstName=None, LastName="Solo"),
                make_notification(user_id=ids[6], Name=None, FirstName=None, LastName=None),
            )
        )
    )
    assert receiver.actions() == ["created"] * 7
    data = {crm: a.data for crm, a in receiver.agents().items()}
    assert data[ids[0]]["username"] == "jdoe@acme.com" and data[ids[0]]["crmUser"] == "jdoe"
    assert data[ids[1]]["username"] == "jane@acme.com.uat"
    assert data[ids[2]]["username"] == "jane@acme.com.invalid"  # Email, as sent
    assert data[ids[2]]["crmUser"] == "jane@acme.com.invalid"
    assert data[ids[3]]["username"] == "not valid"  # neither is an address: Username
    assert data[ids[4]]["username"] == "zoë@bücher.de"
    assert data[ids[4]]["name"] == "Zoë Ünal"
    assert data[ids[5]]["name"] == "Solo"
    assert data[ids[6]]["name"] is None


def test_nil_empty_and_omitted_values_and_custom_field_replacement(receiver: Receiver) -> None:
    user = sf_id("005", 85_100)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user,
                    Phone=NIL,
                    MobilePhone="",
                    SmallPhotoUrl=None,
                    LanguageLocaleKey="",
                    SystemModstamp=T0,
                    **{
                        "Nil__c": NIL,
                        "Empty__c": "",
                        "Text__c": " x & y ",
                        "Upper__C": "not custom",
                    },
                )
            )
        )
    )
    agent = receiver.agents()[user].data
    assert agent["phoneNumbers"] == []
    assert agent["pictureUrl"] is None and agent["crm"]["language"] is None
    assert agent["crm"]["customFields"] == {"Empty__c": "", "Nil__c": None, "Text__c": " x & y "}
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, SystemModstamp=T1, **{"Other__c": "1"})
            )
        )
    )
    assert receiver.agents()[user].data["crm"]["customFields"] == {"Other__c": "1"}


def test_is_active_spellings(receiver: Receiver) -> None:
    ids = [sf_id("005", 85_200 + i) for i in range(6)]
    values = [" TRUE ", "1", "False", "0", "yes", NIL]
    assert_ack(
        receiver.post(
            receiver.message(
                *[
                    make_notification(user_id=u, IsActive=v)
                    for u, v in zip(ids, values, strict=True)
                ]
            )
        )
    )
    assert receiver.actions() == ["created", "created", "ignored", "ignored", "failed", "failed"]
    assert set(receiver.agents()) == set(ids[:2])


def test_active_user_losing_its_call_center_is_disabled_not_deprovisioned(
    receiver: Receiver,
) -> None:
    user = sf_id("005", 85_300)
    assert_ack(receiver.post(receiver.message(make_notification(user_id=user, SystemModstamp=T0))))
    assert_ack(
        receiver.post(
            receiver.message(make_notification(user_id=user, CallCenterId=NIL, SystemModstamp=T1))
        )
    )
    agent = receiver.agents()[user].data
    assert agent["disabled"] is True and agent["inboundEnabled"] is False
    assert agent["crm"]["callCenterId"] is None


# =========================================================================================
# Lifecycle orderings
# =========================================================================================


def test_same_user_twice_with_equal_stamps_the_later_wins(receiver: Receiver) -> None:
    user = sf_id("005", 86_001)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, Name="Earlier", SystemModstamp=T1),
                make_notification(user_id=user[:15], Name="Later", SystemModstamp=T1),
            )
        )
    )
    assert receiver.actions() == ["stale", "created"]
    assert receiver.agents()[user].data["name"] == "Later"
    # equal stamps, deactivation later in the document: it wins
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, Name="Active", SystemModstamp=T2),
                make_notification(user_id=user, IsActive="false", SystemModstamp=T2),
            )
        )
    )
    assert receiver.actions() == ["stale", "deprovisioned"]
    assert receiver.agents() == {}


def test_stamps_in_other_offsets_compare_as_instants(receiver: Receiver) -> None:
    user = sf_id("005", 86_050)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user, Name="Noon UTC", SystemModstamp="2026-11-20T12:00:00.000Z"
                )
            )
        )
    )
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user, Name="Earlier", SystemModstamp="2026-11-20T12:30:00+01:00"
                )
            )
        )
    )
    assert receiver.actions() == ["stale"]
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user, Name="Same instant", SystemModstamp="2026-11-20T13:00:00+01:00"
                )
            )
        )
    )
    assert receiver.actions() == ["updated"]


def test_deactivate_and_reactivate_in_one_message_and_across_messages(receiver: Receiver) -> None:
    user = sf_id("005", 86_100)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, Username="back@acme.com", SystemModstamp=T0)
            )
        )
    )
    agent_id = receiver.agents()[user].id
    # in one message the newest stamp wins, whatever the document order
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=user, Username="back@acme.com", SystemModstamp=T2),
                make_notification(
                    user_id=user, Username="back@acme.com", IsActive="false", SystemModstamp=T1
                ),
            )
        )
    )
    assert receiver.actions() == ["updated", "stale"]
    assert receiver.agents()[user].id == agent_id
    # deprovision; another user takes the freed username; the restore then collides
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user, Username="back@acme.com", IsActive="false", SystemModstamp=T3
                )
            )
        )
    )
    other = sf_id("005", 86_101)
    assert_ack(
        receiver.post(receiver.message(make_notification(user_id=other, Username="BACK@acme.com")))
    )
    assert receiver.actions() == ["created"]
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user, Username="back@acme.com", SystemModstamp="2026-11-21T00:00:00Z"
                )
            )
        )
    )
    assert receiver.actions() == ["failed"]
    assert user not in receiver.agents()
    # the other one leaves: the parked restore is decided again in that transaction
    # (CONTRACT section 2, parking) and keeps the original agent id
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(user_id=other, Username="BACK@acme.com", IsActive="false")
            )
        )
    )
    assert receiver.actions() == ["deprovisioned", "restored"]
    assert receiver.agents()[user].id == agent_id
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=user, Username="back@acme.com", SystemModstamp="2026-11-22T00:00:00Z"
                )
            )
        )
    )
    assert receiver.actions() == ["updated"]
    assert receiver.agents()[user].id == agent_id


def test_username_freed_by_deprovision_and_taken_in_the_same_message(receiver: Receiver) -> None:
    a, b, _ = _two_agents(receiver)
    c = sf_id("005", 86_200)
    assert_ack(
        receiver.post(
            receiver.message(
                make_notification(
                    user_id=a, Username="a@acme.com", IsActive="false", SystemModstamp=T1
                ),
                make_notification(user_id=c, Username="A@ACME.com", SystemModstamp=T1),
                make_notification(user_id=b, Username="a@acme.com", SystemModstamp=T1),
            )
        )
    )
    assert receiver.actions() == ["deprovisioned", "created", "failed"]
    assert receiver.usernames() == {b: "b@acme.com", c: "A@ACME.com"}


def test_case_only_rename_of_ones_own_username_is_an_update(receiver: Receiver) -> None:
    a, _, _ = _two_agents(receiver)
    assert_ack(
        receiver.post(
            receiver.message(make_notification(user_id=a, Username="A@Acme.COM", SystemModstamp=T1))
        )
    )
    assert receiver.actions() == ["updated"]
    assert receiver.usernames()[a] == "A@Acme.COM"


def test_inactive_user_never_provisioned_then_older_active_is_stale(receiver: Receiver) -> None:
    user = sf_id("005", 86_300)
    assert_ack(
        receiver.post(
            receiver.message(make_notification(user_id=user, IsActive="false", SystemModstamp=T2))
        )
    )
    assert receiver.actions() == ["ignored"]
    assert_ack(receiver.post(receiver.message(make_notification(user_id=user, SystemModstamp=T1))))
    assert receiver.actions() == ["stale"]
    assert receiver.agents() == {}


def test_disabled_feature_does_not_burn_notification_ids(make_receiver: MakeReceiver) -> None:
    from receiver.organizations import set_enabled

    receiver = make_receiver(enabled=False, raise_server_exceptions=False)
    body = receiver.message(make_notification(user_id=sf_id("005", 86_400)))
    assert_ack(receiver.post(body))
    assert receiver.actions() == ["ignored"]
    with transaction(receiver.engine) as session:
        set_enabled(session, name=receiver.name, enabled=True)
    assert_ack(receiver.post(body))
    assert receiver.actions() == ["created"]


# =========================================================================================
# Sessions and secrets
# =========================================================================================


def test_deprovision_via_webhook_ends_sessions_and_restore_does_not_revive_them(
    receiver: Receiver,
) -> None:
    user = sf_id("005", 87_001)
    client = receiver.client
    assert_ack(receiver.post(receiver.message(make_notification(user_id=user, SystemModstamp=T0))))
    sessions = [
        client.post(
            f"/v2/organizations/{receiver.name}/users/{form}/sessions", headers=ADMIN
        ).json()["sessionId"]
        for form in (user, user[:15], user[:15] + "zzz")
    ]
    assert all(client.get(f"/v2/sessions/{s}", headers=ADMIN).status_code == 200 for s in sessions)
    assert client.get(f"/v2/sessions/{sessions[0]}").status_code == 401
    assert_ack(
        receiver.post(
            receiver.message(make_notification(user_id=user, IsActive="false", SystemModstamp=T1))
        )
    )
    assert all(client.get(f"/v2/sessions/{s}", headers=ADMIN).status_code == 404 for s in sessions)
    assert (
        client.post(
            f"/v2/organizations/{receiver.name}/users/{user}/sessions", headers=ADMIN
        ).status_code
        == 404
    )
    assert_ack(receiver.post(receiver.message(make_notification(user_id=user, SystemModstamp=T2))))
    assert receiver.actions() == ["restored"]
    assert all(client.get(f"/v2/sessions/{s}", headers=ADMIN).status_code == 404 for s in sessions)
    assert (
        client.post(
            f"/v2/organizations/{receiver.name}/users/{user}/sessions", headers=ADMIN
        ).status_code
        == 201
    )
    with transaction(receiver.engine) as session:
        reasons = {s.id: s.end_reason for s in session.exec(select(AgentSession))}
    assert all(reasons[s] == "deprovisioned" for s in sessions)


def test_session_started_while_a_deprovision_is_applied_ends_too(receiver: Receiver) -> None:
    """The host app starts a session (transaction open, agent row read) while the webhook
    deprovisions the agent: whichever commits first, the session must not outlive the
    agent."""
    user = sf_id("005", 87_100)
    assert_ack(receiver.post(receiver.message(make_notification(user_id=user, SystemModstamp=T0))))
    message = parse_outbound_message(
        receiver.message(make_notification(user_id=user, IsActive="false", SystemModstamp=T1))
    )
    read, applied = threading.Event(), threading.Event()
    started: dict[str, Any] = {}
    errors: list[BaseException] = []

    def host() -> None:
        try:
            with transaction(receiver.engine) as session:
                started["result"] = start_session(
                    session, organization_id=receiver.name, crm_id=user, now=NOW
                )
                read.set()
                applied.wait(timeout=0.5)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            read.set()

    def webhook() -> None:
        try:
            read.wait(timeout=5)
            apply_and_commit(receiver.engine, organization=receiver.name, message=message, now=NOW)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            applied.set()

    threads = [threading.Thread(target=host), threading.Thread(target=webhook)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    result = started["result"]
    assert receiver.agents() == {}
    if result.status is StartStatus.STARTED:
        with transaction(receiver.engine) as session:
            assert not is_session_active(session, result.session_id)


def test_session_id_and_token_stay_out_of_the_provisioning_log_and_faults(
    receiver: Receiver,
) -> None:
    secret = receiver.salesforce_org_id[:15] + "!AQ4AQSessionSecret"
    bodies = [
        receiver.message(make_notification(), session_id=secret),
        receiver.message(make_notification(), session_id=secret).replace(
            b'xsi:type="sf:User"', b'xsi:type="zz:User"'
        ),
        receiver.message(
            make_notification(), session_id=secret, organization_id=org_sf_id(777_777)
        ),
        receiver.message(make_notification(user_id="bad"), session_id=secret),
    ]
    answers = [receiver.post(b) for b in bodies]
    assert [a.status_code for a in answers] == [200, 400, 403, 200]
    for answer in answers:
        assert secret not in answer.text and receiver.token not in answer.text
    logged = receiver.client.get(
        f"/v2/organizations/{receiver.name}/provisioning-log", headers=ADMIN
    )
    assert logged.status_code == 200
    assert secret not in logged.text and receiver.token not in logged.text
