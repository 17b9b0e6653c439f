"""``agent-provision org ...`` and ``users`` with click's CliRunner (CONTRACT section 4), on
both backends."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from starlette.exceptions import StarletteDeprecationWarning

from receiver.app import create_app
from receiver.cli import main
from receiver.db import make_engine, transaction
from receiver.models import Organization
from receiver.organizations import verify_token
from receiver.settings import Settings
from tests.cli.conftest import Run
from tests.factories import make_notification, make_outbound_message

with warnings.catch_warnings():  # starlette 1.x prefers httpx2; httpx works the same here
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ORG_ID = "00D000000000001EAA"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def test_org_add_prints_the_webhook_url_with_its_token(run: Run, database_url: str) -> None:
    out = _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID)).strip()
    prefix = (
        "http://127.0.0.1:8000/v2/features/agent-auto-provision/organizations/demo"
        "/integrations/provider/webhook?token="
    )
    assert out.startswith(prefix)
    token = out[len(prefix) :]
    engine = make_engine(database_url)
    try:
        with transaction(engine) as session:
            org = session.get(Organization, "demo")
            assert org is not None and verify_token(org, token) and not org.enabled
            assert token not in org.token_encrypted and token not in org.token_hash
    finally:
        engine.dispose()


def test_org_add_json_and_15_character_id(run: Run) -> None:
    out = json.loads(
        _ok(
            run(
                "org",
                "add",
                "acme-uat",
                "--salesforce-org-id",
                ORG_ID[:15],
                "--base-url",
                "https://provision.example.com/",
                "--json",
            )
        )
    )
    assert list(out) == ["organization", "salesforceOrgId", "webhookUrl", "enabled"]
    assert out["organization"] == "acme-uat"
    assert out["salesforceOrgId"] == ORG_ID
    assert out["enabled"] is False
    assert out["webhookUrl"].startswith("https://provision.example.com/v2/features/")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["org", "add", "Bad_Name", "--salesforce-org-id", ORG_ID], 2, "organization name"),
        (["org", "add", "x", "--salesforce-org-id", "005000000000001AAA"], 2, "salesforce-org-id"),
        (
            ["org", "add", "x", "--salesforce-org-id", ORG_ID, "--base-url", "ftp://x"],
            2,
            "--base-url",
        ),
        (["org", "enable", "nope"], 4, "nope"),
        (["org", "show", "nope"], 4, "nope"),
        (["org", "url", "nope"], 4, "nope"),
        (["org", "rotate-token", "nope"], 4, "nope"),
        (["org", "update", "nope", "--base-url", "http://x"], 4, "nope"),
        (["users", "nope"], 4, "nope"),
        (["org", "show", "Bad_Name"], 2, "organization name"),
        (["org", "url", "x_y"], 2, "organization name"),
        (["users", "Bad_Name", "--json"], 2, "organization name"),
        (["reconcile", "show", "Bad_Name", "1"], 2, "organization name"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_codes(
    run: Run, args: list[str], code: int, words: str
) -> None:
    result = run(*args)
    assert result.exit_code == code
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]


def test_org_add_twice_is_a_usage_error(run: Run) -> None:
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID))
    result = run("org", "add", "demo", "--salesforce-org-id", ORG_ID)
    assert result.exit_code == 2
    assert "already registered" in result.stderr


def test_org_update_needs_something_to_change(run: Run) -> None:
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID))
    result = run("org", "update", "demo")
    assert result.exit_code == 2 and "--base-url" in result.stderr


def test_org_update_with_the_same_base_url_says_nothing_changed(run: Run) -> None:
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID, "--base-url", "https://a.example"))
    same = run("org", "update", "demo", "--base-url", "https://a.example")
    assert same.exit_code == 0
    assert "the webhook URL changed" not in same.stderr and "unchanged" in same.stderr
    moved = run("org", "update", "demo", "--base-url", "https://b.example")
    assert moved.exit_code == 0 and "the webhook URL changed" in moved.stderr


def test_org_enable_disable_list_show_url(run: Run) -> None:
    url = _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID)).strip()
    _ok(run("org", "add", "b-org", "--salesforce-org-id", "00D000000000002"))
    assert _ok(run("org", "enable", "demo")).strip() == "organization demo: enabled"
    listed = json.loads(_ok(run("org", "list", "--json")))
    assert [(o["organization"], o["enabled"]) for o in listed] == [("b-org", False), ("demo", True)]
    assert all("webhookUrl" not in o for o in listed)
    table = _ok(run("org", "list"))
    assert "demo" in table and "token=" not in table
    shown = json.loads(_ok(run("org", "show", "demo", "--json")))
    assert shown["webhookUrl"] == url and shown["enabled"] is True
    assert f"webhook url:       {url}" in _ok(run("org", "show", "demo"))
    assert _ok(run("org", "url", "demo")).strip() == url
    assert _ok(run("org", "disable", "demo")).strip() == "organization demo: disabled"
    assert json.loads(_ok(run("org", "show", "demo", "--json")))["enabled"] is False


def test_org_update_keeps_the_token_and_rotate_token_replaces_it(run: Run) -> None:
    url = _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID)).strip()
    token = url.split("token=")[1]
    updated = _ok(
        run(
            "org",
            "update",
            "demo",
            "--base-url",
            "https://p.example.com",
            "--salesforce-org-id",
            "00D000000000009",
        )
    ).strip()
    assert updated.startswith("https://p.example.com/") and updated.endswith(token)
    shown = json.loads(_ok(run("org", "show", "demo", "--json")))
    assert shown["salesforceOrgId"].startswith("00D000000000009")
    rotated = _ok(run("org", "rotate-token", "demo")).strip()
    assert rotated.split("token=")[1] != token
    assert _ok(run("org", "url", "demo")).strip() == rotated


def test_database_url_from_the_environment_and_before_the_command(
    run: Run, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_PROVISION_DATABASE_URL", database_url)
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID, url=False))
    assert "demo" in _ok(run("--database-url", database_url, "org", "list", url=False))
    monkeypatch.delenv("AGENT_PROVISION_DATABASE_URL")
    assert "demo" in _ok(run("org", "list"))


def test_default_store_is_agent_provision_db_in_the_working_directory(
    run: Run, tmp_path: Path
) -> None:
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID, url=False))
    assert (tmp_path / "agent_provision.db").exists()
    assert (tmp_path / "agent_provision.db.key").exists()


def _deliver(database_url: str, body: bytes) -> None:
    engine = make_engine(database_url)
    try:
        with TestClient(create_app(Settings(database_url=database_url), engine=engine)) as c:
            from receiver.organizations import webhook_path

            with transaction(engine) as session:
                org = session.get(Organization, "demo")
                assert org is not None
            url = (
                CliRunner()
                .invoke(main, ["org", "url", "demo", "--database-url", database_url])
                .stdout.strip()
            )
            path = url.split("8000", 1)[1]
            assert path.startswith(webhook_path("demo"))
            response = c.post(path, content=body)
            assert response.status_code == 200, response.text
    finally:
        engine.dispose()


def test_users_json_is_the_agent_list_sorted_by_crm_id(run: Run, database_url: str) -> None:
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID))
    _ok(run("org", "enable", "demo"))
    assert json.loads(_ok(run("users", "demo", "--json"))) == []
    # ids that sort differently case-insensitively: byte order puts "B" before "a"
    upper, lower = "005Ab0000000Bxx", "005Ab0000000axx"
    body = make_outbound_message(
        [make_notification(user_id=lower), make_notification(user_id=upper)], organization_id=ORG_ID
    )
    _deliver(database_url, body)
    agents: list[dict[str, Any]] = json.loads(_ok(run("users", "demo", "--json")))
    assert [a["crmId"][:15] for a in agents] == [upper, lower]
    assert all(len(a["crmId"]) == 18 for a in agents)
    table = _ok(run("users", "demo"))
    assert agents[0]["username"] in table and "CRM ID" in table


def test_users_after_the_examples(run: Run, database_url: str) -> None:
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID))
    _ok(run("org", "enable", "demo"))
    for name in sorted(p.name for p in EXAMPLES.glob("*.xml")):
        _deliver(database_url, (EXAMPLES / name).read_bytes())
    agents = json.loads(_ok(run("users", "demo", "--json")))
    assert [(a["name"], a["disabled"]) for a in agents] == [
        ("Ada Lovelace", False),
        ("Jürgen Groß", False),
    ]


def test_unreachable_store_exits_75(run: Run, tmp_path: Path) -> None:
    bad = f"postgresql+psycopg://nobody@/nodb?host={tmp_path / 'no-socket-here'}"
    result = run("users", "demo", "--database-url", bad, url=False)
    assert result.exit_code == 75
    assert result.stderr.startswith("error: the store is unavailable")


def test_unusable_database_url_is_a_usage_error(run: Run) -> None:
    result = run("org", "list", "--database-url", "not a url", url=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_help_lists_the_commands(run: Run) -> None:
    out = _ok(run("--help", url=False))
    for command in ("serve", "org", "users"):
        assert command in out


def test_a_switch_flipped_from_the_cli_names_the_login_and_host(
    run: Run, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import pwd
    import socket

    from receiver.feature_switch import list_audit

    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID))
    monkeypatch.setenv("LOGNAME", "someone-else")  # the caller's environment is not asked
    monkeypatch.setenv("USER", "someone-else")
    _ok(run("org", "enable", "demo"))
    engine = make_engine(database_url)
    try:
        with transaction(engine, read_only=True) as session:
            (flip,) = list_audit(session, organization_id="demo")
    finally:
        engine.dispose()
    login = pwd.getpwuid(os.geteuid()).pw_name
    assert flip.actor == f"cli:{login}@{socket.gethostname()}"
