"""Reading every User (``deployer.users``) against the reconcile cassettes: pages and
``nextRecordsUrl``, an expired session refreshed mid-run, a failing page, another org,
and the backoff on REQUEST_LIMIT_EXCEEDED / 503 (an in-process transport)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from deployer.credentials import Credentials
from deployer.users import CallCounter, LoginSession, StaticSession, UserReader
from sf_metadata.errors import AuthenticationError, SalesforceUnreadable
from sf_metadata.soql import user_query
from tests.deployer._vcr import HOST, make_vcr
from tests.deployer.cassette_builder import ORG_ID, OTHER_ORG_ID
from tests.deployer.reconcile_cassettes import CUSTOM_FIELD, USERS

CREDS = Credentials(
    kind="client-credentials",
    consumer_key="3MVG9FakeConsumerKey",
    consumer_secret="FakeConsumerSecret123",
    domain="orgname.my",
)


def reader() -> UserReader:
    counter = CallCounter()
    http = counter.attach(requests.Session())
    org = LoginSession(CREDS, "62.0", http)
    return UserReader(http, org, "62.0", counter, sleep=lambda s: None)


def read_all(r: UserReader) -> list[dict[str, Any]]:
    r.check_organization(ORG_ID)
    fields = r.custom_fields()
    assert fields == (CUSTOM_FIELD,)  # the long text area is left out, as deploy does
    return [rec for page in r.pages(user_query(fields)) for rec in page.records]


def test_reads_every_page_following_next_records_url() -> None:
    with make_vcr().use_cassette("reconcile/pages.yaml") as cassette:
        r = reader()
        records = read_all(r)
        assert cassette.all_played
    assert [rec["Id"] for rec in records] == [u["Id"] for u in USERS]
    assert r.counter.calls == 6  # login, Organization, describe, 3 pages


def test_expired_session_refreshed_mid_run_continues_from_the_cursor() -> None:
    with make_vcr().use_cassette("reconcile/expired_session_refresh.yaml") as cassette:
        r = reader()
        records = read_all(r)
        assert cassette.all_played
    assert len(records) == 7
    assert r.counter.calls == 8  # two logins and the refused page counted


def test_failing_page_raises_before_the_caller_sees_the_rest() -> None:
    seen: list[int] = []
    with make_vcr().use_cassette("reconcile/failing_page.yaml"):
        r = reader()
        r.check_organization(ORG_ID)
        pages = r.pages(user_query(r.custom_fields()))
        with pytest.raises(
            SalesforceUnreadable, match="page 2 of the User query.*UNKNOWN_EXCEPTION"
        ):
            for page in pages:
                seen.append(len(page.records))
    assert seen == [3]


def test_other_org_is_refused() -> None:
    with make_vcr().use_cassette("reconcile/other_org.yaml"):
        r = reader()
        with pytest.raises(SalesforceUnreadable, match=f"org {OTHER_ORG_ID}.*sandbox refresh"):
            r.check_organization(ORG_ID)


class Scripted(BaseAdapter):
    """Answers from a list of (status, json body, headers)."""

    def __init__(self, answers: list[tuple[int, Any, dict[str, str]]]) -> None:
        super().__init__()
        self.answers = answers
        self.sent: list[requests.PreparedRequest] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        self.sent.append(request)
        status, body, headers = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers.update({"Content-Type": "application/json", **headers})
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def scripted_reader(
    answers: list[tuple[int, Any, dict[str, str]]],
) -> tuple[UserReader, list[float], Scripted]:
    http = requests.Session()
    adapter = Scripted(answers)
    http.mount("https://", adapter)
    sleeps: list[float] = []
    r = UserReader(
        http, StaticSession(f"https://{HOST}", "tok"), "62.0", CallCounter(), sleep=sleeps.append
    )
    return r, sleeps, adapter


LIMIT = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
DONE = {"totalSize": 0, "done": True, "records": []}


def test_backs_off_on_request_limit_and_503_then_reads() -> None:
    r, sleeps, adapter = scripted_reader(
        [(403, LIMIT, {}), (503, [], {"Retry-After": "7"}), (200, DONE, {})]
    )
    pages = list(r.pages("SELECT Id FROM User"))
    assert len(pages) == 1 and pages[0].done and pages[0].records == []
    assert sleeps == [2.0, 7.0]
    assert r.counter.calls == 3
    assert adapter.sent[0].headers["Sforce-Query-Options"] == "batchSize=2000"


def test_gives_up_with_a_clear_message() -> None:
    r, sleeps, _ = scripted_reader([(403, LIMIT, {})] * 6)
    with pytest.raises(
        SalesforceUnreadable, match="REQUEST_LIMIT_EXCEEDED.*gave up after 6 attempts"
    ):
        list(r.pages("SELECT Id FROM User"))
    assert len(sleeps) == 5


def test_existing_session_cannot_be_refreshed() -> None:
    expired = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
    r, _, _ = scripted_reader([(401, expired, {})])
    with pytest.raises(AuthenticationError, match="cannot be refreshed"):
        list(r.pages("SELECT Id FROM User"))


def test_not_a_query_result_is_unreadable() -> None:
    r, _, _ = scripted_reader([(200, {"done": False, "records": []}, {})])
    with pytest.raises(SalesforceUnreadable, match="no nextRecordsUrl"):
        list(r.pages("SELECT Id FROM User"))


def test_an_untrusted_certificate_fails_at_once_without_backing_off() -> None:
    class Untrusted(Scripted):
        def send(  # type: ignore[override]
            self, request: requests.PreparedRequest, **kwargs: Any
        ) -> requests.Response:
            self.sent.append(request)
            raise requests.exceptions.SSLError("certificate verify failed")

    http = requests.Session()
    http.mount("https://", Untrusted([]))
    sleeps: list[float] = []
    r = UserReader(
        http, StaticSession(f"https://{HOST}", "tok"), "62.0", CallCounter(), sleep=sleeps.append
    )
    with pytest.raises(SalesforceUnreadable, match="TLS certificate .* is not trusted"):
        list(r.pages("SELECT Id FROM User"))
    assert sleeps == [] and r.counter.calls == 1
