"""OrgClient's transport: transient HTTP failures retried on the session, the original
error kept as the cause (a local HTTP server on 127.0.0.1 plays Salesforce)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from deployer.client import OrgClient, RetryingAdapter, retrying_session
from deployer.credentials import Credentials
from sf_metadata.errors import AuthenticationError, SalesforceError


class _Script:
    """What the server does for each request, in order: ``"reset"`` (TCP RST before any
    answer), an HTTP status, and ``200`` once the script ran out."""

    def __init__(self, *steps: int | str) -> None:
        self.steps = list(steps)
        self.seen: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def next(self, method: str, action: str | None) -> int | str:
        with self.lock:
            self.seen.append((method, action))
            return self.steps.pop(0) if self.steps else 200


@pytest.fixture
def server() -> Iterator[tuple[str, _Script]]:
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            step = script.next(self.command, self.headers.get("SOAPAction"))
            if step == "reset":
                linger = struct.pack("ii", 1, 0)  # close with RST, like a dropped connection
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.close_connection = True
                return
            assert isinstance(step, int)
            self.send_response(step)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = _answer
        do_POST = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _session() -> requests.Session:
    return retrying_session(requests.Session(), total=3, backoff_factor=0)


def _set(script: _Script, *steps: int | str) -> None:
    script.steps = list(steps)


def test_a_reset_during_a_status_poll_is_retried(server: tuple[str, _Script]) -> None:
    url, script = server
    _set(script, "reset")
    response = _session().post(url, data=b"<x/>", headers={"SOAPAction": "checkDeployStatus"})
    assert response.status_code == 200
    assert script.seen == [("POST", "checkDeployStatus"), ("POST", "checkDeployStatus")]


def test_502_503_504_are_retried_then_the_last_answer_returned(
    server: tuple[str, _Script],
) -> None:
    url, script = server
    _set(script, 502, 503, 504)
    assert _session().get(url).status_code == 200
    assert len(script.seen) == 4
    _set(script, 503, 503, 503, 503, 503)
    assert _session().get(url).status_code == 503  # retries spent: the answer, not an error
    assert len(script.seen) == 4 + 4


def test_a_deploy_submit_is_not_sent_twice(server: tuple[str, _Script]) -> None:
    url, script = server
    _set(script, "reset")
    with pytest.raises(requests.ConnectionError):
        _session().post(url, data=b"<x/>", headers={"SOAPAction": "deploy"})
    _set(script, 503)
    response = _session().post(url, data=b"<x/>", headers={"SOAPAction": "deploy"})
    assert response.status_code == 503
    assert script.seen == [("POST", "deploy"), ("POST", "deploy")]


def test_org_client_mounts_the_retry_on_its_session() -> None:
    sessions: list[requests.Session] = []

    def fake_login(credentials: Credentials, *, api_version: str, session: Any) -> Any:
        sessions.append(session)
        return object()

    OrgClient(
        Credentials(kind="session", instance_url="https://x", access_token="t"),
        api_version="62.0",
        login_fn=fake_login,
    )
    [session] = sessions
    assert isinstance(session.get_adapter("https://acme.my.salesforce.com/"), RetryingAdapter)


def test_an_unreachable_metadata_api_keeps_the_connection_error_as_cause() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    class Sf:
        sf_instance = f"127.0.0.1:{port}"
        session_id = "SESSION"
        session = retrying_session(requests.Session(), total=1, backoff_factor=0)

    def fake_login(credentials: Credentials, *, api_version: str, session: Any) -> Any:
        return Sf()

    client = OrgClient(
        Credentials(kind="session", instance_url="https://x", access_token="t"),
        api_version="62.0",
        login_fn=fake_login,
    )
    with pytest.raises(SalesforceError, match="cannot reach the Metadata API") as caught:
        client.metadata_call("checkDeployStatus", lambda session_id: b"<x/>")
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def _refreshable_client(login_fn: Any) -> OrgClient:
    """A client whose credentials can log in again (client credentials), logging in with
    ``login_fn``."""
    return OrgClient(
        Credentials(
            kind="client-credentials", consumer_key="k", consumer_secret="s", domain="acme.my"
        ),
        api_version="62.0",
        login_fn=login_fn,
    )


def test_refresh_session_logs_in_again_each_time_asked() -> None:
    logins: list[str] = []

    class Sf:
        sf_instance = "acme.my.salesforce.com"
        session_id = "SESSION"

    def fake_login(credentials: Credentials, *, api_version: str, session: Any) -> Any:
        logins.append(api_version)
        return Sf()

    client = _refreshable_client(fake_login)
    client.refresh_session()
    client.refresh_session()
    assert logins == ["62.0"] * 3
    assert client.instance_url == "https://acme.my.salesforce.com"
    assert client.access_token == "SESSION"


def test_a_login_that_failed_is_tried_again_by_the_next_call() -> None:
    """An expired session whose re-login cannot reach Salesforce says so, call after call,
    and never 'expired again right after logging in' (no login succeeded)."""
    from simple_salesforce.exceptions import SalesforceExpiredSession

    logins: list[str] = []

    class Sf:
        sf_instance = "acme.my.salesforce.com"
        session_id = "SESSION"

        def query_all(self, soql: str) -> Any:
            raise SalesforceExpiredSession("https://x", 401, "User", b"INVALID_SESSION_ID")

    def fake_login(credentials: Credentials, *, api_version: str, session: Any) -> Any:
        logins.append(api_version)
        if len(logins) > 1:
            raise SalesforceError("cannot reach Salesforce at https://login.salesforce.com")
        return Sf()

    client = _refreshable_client(fake_login)
    for _ in range(2):
        with pytest.raises(SalesforceError, match="cannot reach Salesforce") as caught:
            client.query("SELECT Id FROM User")
        assert not isinstance(caught.value, AuthenticationError)
    assert len(logins) == 3  # the first login, then one attempt per call
