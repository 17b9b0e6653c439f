"""``agent-provision serve`` for real: a uvicorn process on a loopback port. The access log
shows the webhook path without its query string, so the token never reaches it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from receiver.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORG_ID = "00D000000000001EAA"

pytestmark = pytest.mark.slow  # a real uvicorn process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_takes_messages_and_logs_no_token(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENT_PROVISION_DATABASE_URL", raising=False)
    url_flag = ["--database-url", f"sqlite:///{tmp_path / 'store.db'}"]
    port = _free_port()
    _cli(
        "org",
        "add",
        "demo",
        "--salesforce-org-id",
        ORG_ID,
        "--base-url",
        f"http://127.0.0.1:{port}",
        *url_flag,
    )
    _cli("org", "enable", "demo", *url_flag)
    webhook = _cli("org", "url", "demo", *url_flag)
    token = webhook.split("token=")[1]

    log_path = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_PROVISION_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from receiver.cli import main; main()",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                *url_flag,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
            body = (EXAMPLES / "01-create-users.xml").read_bytes()
            ok = httpx.post(
                webhook,
                content=body,
                headers={"content-type": "text/xml; charset=UTF-8"},
                timeout=30,
            )
            assert ok.status_code == 200 and b"<Ack>true</Ack>" in ok.content
            wrong = httpx.post(webhook.replace(token, token[:-2] + "xx"), content=body, timeout=30)
            assert wrong.status_code == 401
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    output = log_path.read_text()
    assert '/integrations/provider/webhook HTTP/1.1" 200' in output
    assert '/integrations/provider/webhook HTTP/1.1" 401' in output
    assert token not in output
    assert "token=" not in output
    users = _cli("users", "demo", "--json", *url_flag)
    assert users.count('"crmId"') == 3
