"""``agent-provision serve`` for real: a uvicorn process on a loopback port. The access log
shows the webhook path without its query string, so the token never reaches it."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from receiver.cli import main
from tests.serve_process import free_port, serve_process
from tests.sqlite_template import copy_migrated_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORG_ID = "00D000000000001EAA"

pytestmark = pytest.mark.slow  # a real uvicorn process


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
    # a copy of the migrated template: this test is about serve, not about making a store
    url_flag = ["--database-url", f"sqlite:///{copy_migrated_store(tmp_path / 'store.db')}"]
    port = free_port()
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
    serve_args = ["--workers", str(workers), *url_flag]
    with serve_process(env, port, cwd=tmp_path, log_path=log_path, args=serve_args):
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
    output = log_path.read_text()
    assert '/integrations/provider/webhook HTTP/1.1" 200' in output
    assert '/integrations/provider/webhook HTTP/1.1" 401' in output
    assert token not in output
    assert "token=" not in output
    users = _cli("users", "demo", "--json", *url_flag)
    assert users.count('"crmId"') == 3


def test_a_busy_port_is_said_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not uvicorn's startup failure (exit 3, the CLI's "Salesforce authentication")."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path / 's.db'}"],
            catch_exceptions=False,
        )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: port {port} is busy (another process listens on 127.0.0.1:{port}): stop "
        "it, or choose another port with --port N"
    )
    assert list(tmp_path.iterdir()) == []  # nothing migrated, nothing created


DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"


def test_demo_takes_a_port_and_says_when_it_is_busy(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [str(DEMO), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
    assert out.returncode == 2
    assert f"error: port {port} is busy" in out.stderr
    bad = subprocess.run(
        [str(DEMO), "--port", "eighty"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "--port must be a number" in bad.stderr
