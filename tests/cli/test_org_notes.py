"""``org add`` / ``org update`` notes about the Salesforce org id, and settings errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from receiver.cli import main


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENT_PROVISION_SECRET_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'store.db'}"

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--database-url", url], catch_exceptions=False)

    return invoke


def test_a_wrong_suffix_is_stored_canonical_and_said(run) -> None:
    result = run("org", "add", "t1", "--salesforce-org-id", "00D000000000001ZZZ", "--json")
    assert result.exit_code == 0
    assert '"salesforceOrgId": "00D000000000001EAA"' in result.stdout
    assert "00D000000000001ZZZ has a wrong case-safe suffix; stored as 00D000000000001EAA" in (
        result.stderr
    )


def test_a_correct_id_gets_no_note(run) -> None:
    result = run("org", "add", "t1", "--salesforce-org-id", "00D000000000001EAA")
    assert result.exit_code == 0
    assert "note:" not in result.stderr


def test_a_second_organization_for_one_salesforce_org_is_said(run) -> None:
    assert run("org", "add", "prod", "--salesforce-org-id", "00D000000000001").exit_code == 0
    result = run("org", "add", "prod-2", "--salesforce-org-id", "00D000000000001EAA")
    assert result.exit_code == 0
    assert "also registered as organization(s) prod" in result.stderr
    update = run("org", "add", "other", "--salesforce-org-id", "00D000000000002")
    assert "note:" not in update.stderr
    moved = run("org", "update", "other", "--salesforce-org-id", "00D000000000001")
    assert moved.exit_code == 0
    assert "also registered as organization(s) prod, prod-2" in moved.stderr


def test_an_unknown_log_level_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENT_PROVISION_LOG_LEVEL", "loud")
    result = CliRunner().invoke(main, ["serve", "--port", "1"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: setting log_level")
    assert "critical, error, warning, info, debug" in result.stderr
