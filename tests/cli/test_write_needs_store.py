"""Commands that change something already stored (an organization, an operator, a plan)
never create a store either (newcomer check: ``org disable demo`` run from another
directory made an empty store there, and every later command of that directory then said
the organization was not registered): against a missing SQLite file or a URL into a
missing directory they name the store they looked at and how to point at the right one,
create nothing, and exit 4 (the organization or operator is not there). Only
``org add``, ``operator add`` and ``serve`` make a new store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from receiver.cli import main

#: (command, exit code): commands that write to what is already stored.
WRITES = [
    (["org", "enable", "demo"], 4),
    (["org", "disable", "demo"], 4),
    (["org", "update", "demo", "--base-url", "https://agents.example.com"], 4),
    (["org", "rotate-token", "demo"], 4),
    (["org", "disconnect", "demo"], 4),
    (["deploy", "demo", "--dry-run"], 4),
    (["check", "demo"], 4),
    (["undeploy", "demo"], 4),
    (["reconcile", "run", "demo"], 4),
    (["reconcile", "apply", "demo", "1"], 4),
    (["reconcile", "reject", "demo", "1"], 4),
    (["operator", "remove", "bob"], 4),
    (["operator", "set-password", "bob", "--password-stdin"], 4),
]


def _invoke(args: list[str], monkeypatch: pytest.MonkeyPatch, cwd: Path) -> Result:
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("AGENT_PROVISION_SECRET_KEY", raising=False)
    return CliRunner().invoke(main, args, input="a long enough password\n")


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "code"), WRITES)
def test_a_write_in_a_directory_without_a_store_creates_nothing(
    args: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENT_PROVISION_DATABASE_URL", raising=False)
    result = _invoke(args, monkeypatch, tmp_path)
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert str(tmp_path / "agent_provision.db") in errors[0]
    assert "--database-url" in errors[0]
    assert "'demo' is not registered" in errors[0] or "'bob' does not exist" in errors[0]
    assert _tree(tmp_path) == []


@pytest.mark.parametrize(("args", "code"), WRITES)
def test_a_write_to_a_url_into_a_missing_directory_creates_no_directory(
    args: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    result = _invoke([*args, "--database-url", f"sqlite:///{missing}"], monkeypatch, tmp_path)
    assert result.exit_code == code, result.output
    assert str(missing) in result.stderr
    assert _tree(tmp_path) == []


def test_org_add_still_creates_the_store_and_later_writes_find_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENT_PROVISION_DATABASE_URL", raising=False)
    added = _invoke(
        [
            "org",
            "add",
            "demo",
            "--salesforce-org-id",
            "00D000000000001EAA",
            "--base-url",
            "http://127.0.0.1:8000",
        ],
        monkeypatch,
        tmp_path,
    )
    assert added.exit_code == 0, added.output
    assert (tmp_path / "agent_provision.db").exists()
    enabled = _invoke(["org", "enable", "demo"], monkeypatch, tmp_path)
    assert enabled.exit_code == 0, enabled.output
    shown = _invoke(["org", "show", "demo", "--json"], monkeypatch, tmp_path)
    assert '"enabled": true' in shown.stdout
