"""``agent-provision serve`` never silently serves a new, empty store where one with data is
expected (issue 12, item 1), and starts uvicorn with the connection limits (item 7).
uvicorn.run is replaced by a recorder: what is tested is what serve decides before it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from receiver.cli import main
from tests.serve_process import free_port

ORG_ID = "00D000000000001EAA"


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """uvicorn.run calls; the environment that serve exports is restored afterwards."""
    saved = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("AGENT_PROVISION_")]:
        del os.environ[name]
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kw: calls.append(kw))
    try:
        yield calls
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _serve(*args: str) -> Any:
    """``serve ARGS`` on a free port (uvicorn.run is replaced; the port is still checked, and
    the default 8000 may be taken by a server someone runs on this machine)."""
    return _invoke("serve", "--port", str(free_port()), *args)


def test_a_deleted_store_beside_its_key_file_is_refused(
    runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    store = tmp_path / "data" / "agent_provision.db"
    url = ["--database-url", f"sqlite:///{store}"]
    assert _invoke("org", "add", "demo", "--salesforce-org-id", ORG_ID, *url).exit_code == 0
    assert Path(f"{store}.key").exists()
    for leftover in store.parent.glob("agent_provision.db*"):
        if not leftover.name.endswith(".key"):
            leftover.unlink()  # a cleanup job took the store, the key file stayed
    result = _serve(*url)
    assert result.exit_code == 2
    assert "does not exist" in result.output and "agent_provision.db.key" in result.output
    assert "--new-store" in result.output
    assert runs == [] and not store.exists()

    result = _serve("--new-store", *url)
    assert result.exit_code == 0, result.output
    assert "NEW, EMPTY store" in result.output
    assert len(runs) == 1


def test_a_new_store_is_announced_and_an_existing_one_is_not(
    runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    url = ["--database-url", f"sqlite:///{tmp_path / 'fresh.db'}"]
    first = _serve(*url)
    assert first.exit_code == 0, first.output
    assert "NEW, EMPTY store" in first.output
    second = _serve(*url)
    assert second.exit_code == 0, second.output
    assert "NEW, EMPTY" not in second.output


def test_serve_runs_uvicorn_with_the_connection_limits(
    runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    url = ["--database-url", f"sqlite:///{tmp_path / 's.db'}"]
    result = _serve("--header-timeout", "3", "--max-connections", "100", *url)
    assert result.exit_code == 0, result.output
    (kw,) = runs
    assert kw["http"] == "receiver.http_limits:LimitedAutoProtocol"
    assert kw["backlog"] == 256
    assert os.environ["AGENT_PROVISION_HEADER_TIMEOUT"] == "3.0"
    assert os.environ["AGENT_PROVISION_MAX_CONNECTIONS"] == "100"
