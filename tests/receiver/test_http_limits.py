"""receiver.http_limits for real (issue 12, item 7): ``agent-provision serve`` with a low
file-descriptor limit (512) and a 1 s header deadline, flooded with 600 connections that
send nothing or half a header. A legitimate POST is still answered, and the server closes
every idle connection. Before the limits the worker ran out of descriptors, the POST was
never accepted, and the idle connections stayed open."""

from __future__ import annotations

import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from receiver.cli import main
from tests.factories import make_notification, make_outbound_message, make_user_fields, sf_id
from tests.serve_process import free_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

ORG_ID = "00D000000000001EAA"
FD_LIMIT = 512
FLOOD = 600


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


class _Server:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url_flag = ["--database-url", f"sqlite:///{tmp_path / 'store.db'}"]
        _cli("org", "add", "demo", "--salesforce-org-id", ORG_ID, *self.url_flag)
        _cli("org", "enable", "demo", *self.url_flag)
        self.webhook = _cli("org", "url", "demo", *self.url_flag).replace(
            "http://127.0.0.1:8000", f"http://127.0.0.1:{self.port}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_PROVISION_")}
        env["AGENT_PROVISION_HEADER_TIMEOUT"] = "1"
        script = Path(sys.executable).with_name("agent-provision")
        self.log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(script), "serve", "--port", str(self.port), *self.url_flag],
            stdout=self.log,
            stderr=self.log,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
            preexec_fn=_low_fd_limit,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("AGENT_PROVISION_")]:
        monkeypatch.delenv(name)
    s = _Server(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def _flood(port: int, count: int) -> list[socket.socket]:
    """``count`` connections: odd ones send half a request header, even ones nothing.
    Stops early when the server's backlog is full (a connect that times out)."""
    opened: list[socket.socket] = []
    for n in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
        except OSError:
            break
        if n % 2:
            s.sendall(b"POST /v2/features/agent-auto-provision HTTP/1.1\r\nHost: x\r\n")
        opened.append(s)
    return opened


def _closed_by_server(sockets: list[socket.socket], bound_s: float) -> int:
    """How many of ``sockets`` the server closed within ``bound_s`` (EOF or reset). Waits
    with epoll (``selectors``): ``select()`` refuses file descriptors above 1023, which a
    long test process reaches."""
    closed = 0
    deadline = time.monotonic() + bound_s
    with selectors.DefaultSelector() as waiting:
        for s in sockets:
            waiting.register(s, selectors.EVENT_READ)
        while waiting.get_map() and time.monotonic() < deadline:
            for key, _ in waiting.select(0.2):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed += 1
                    waiting.unregister(conn)
    return closed


def test_idle_and_half_header_connections_are_bounded_and_timed_out(server: _Server) -> None:
    flood = _flood(server.port, FLOOD)
    try:
        body = make_outbound_message(
            [make_notification(user_id=sf_id("005", 1), **make_user_fields())],
            organization_id=ORG_ID,
        )
        answer = httpx.post(
            server.webhook,
            content=body,
            headers={"content-type": "text/xml; charset=UTF-8", "soapaction": '""'},
            timeout=15,
        )
        assert answer.status_code == 200, answer.text
        assert len(flood) == FLOOD  # every connect was accepted by the kernel
        assert _closed_by_server(flood, bound_s=30) == len(flood)
    finally:
        for s in flood:
            s.close()


def test_a_keep_alive_connection_that_stalls_in_its_next_header_is_closed(
    server: _Server,
) -> None:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"\r\n\r\nok\n"):
            chunk = s.recv(4096)
            assert chunk, "closed before the first answer"
            first += chunk
        assert first.startswith(b"HTTP/1.1 200")
        # Half of the next request's header: uvicorn's keep-alive timer stops at the first
        # byte, so only the header deadline (1 s here) can end it.
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert _closed_by_server([s], bound_s=15) == 1
    finally:
        s.close()
