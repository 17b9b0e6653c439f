"""Commands that only read never create or migrate a store (issue 7, "a newcomer's first
hour"): against a missing SQLite file, a missing directory or a database without the
schema they name the store they looked at and how to point at the right one, and exit 4
(a command about an organization: it is not registered there) or 2 (a list: the URL
points at no store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect
from sqlalchemy.pool import NullPool

from receiver.cli import main
from receiver.db import _alembic_config, head_revision, make_engine, migrate
from receiver.store_probe import HEAD_REVISION

ORG_ID = "00D000000000001EAA"

#: (command, exit code): the commands that only read.
READ_ONLY = [
    (["org", "url", "demo"], 4),
    (["org", "show", "demo"], 4),
    (["org", "show", "demo", "--json"], 4),
    (["org", "list"], 2),
    (["org", "list", "--json"], 2),
    (["users", "demo"], 4),
    (["users", "demo", "--json"], 4),
    (["operator", "list"], 2),
    (["reconcile", "show", "demo", "1"], 4),
]


def _invoke(args: list[str], monkeypatch: pytest.MonkeyPatch, cwd: Path) -> Result:
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("AGENT_PROVISION_SECRET_KEY", raising=False)
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_error_line(result: Result, *words: str) -> str:
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize(("args", "code"), READ_ONLY)
def test_default_store_missing_in_the_working_directory_is_not_created(
    args: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENT_PROVISION_DATABASE_URL", raising=False)
    result = _invoke(args, monkeypatch, tmp_path)
    assert result.exit_code == code
    _one_error_line(
        result,
        str(tmp_path / "agent_provision.db"),
        "--database-url",
        "AGENT_PROVISION_DATABASE_URL",
    )
    assert _tree(tmp_path) == []


@pytest.mark.parametrize(("args", "code"), READ_ONLY)
def test_a_url_into_a_missing_directory_creates_no_directory(
    args: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    monkeypatch.setenv("AGENT_PROVISION_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    result = _invoke([*args, "--database-url", f"sqlite:///{missing}"], monkeypatch, tmp_path)
    assert result.exit_code == code
    line = _one_error_line(result, str(missing), "--database-url")
    if code == 4:
        assert "'demo' is not registered" in line
    assert _tree(tmp_path) == []


def test_a_store_without_the_schema_is_neither_migrated_nor_written(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty SQLite file, or an empty PostgreSQL database: no table is created."""
    sqlite_file = tmp_path / "store" / "agent_provision.db"
    if database_url.startswith("sqlite"):
        sqlite_file.parent.mkdir()
        sqlite_file.touch()
    for args, code in READ_ONLY:
        result = _invoke([*args, "--database-url", database_url], monkeypatch, tmp_path)
        assert result.exit_code == code, (args, result.stderr)
        _one_error_line(result, "holds no agent-provision store", "--database-url")
    if database_url.startswith("sqlite"):
        assert sqlite_file.stat().st_size == 0
        assert _tree(tmp_path) == ["store", "store/agent_provision.db"]
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []
    finally:
        engine.dispose()


def _old_store(tmp_path: Path) -> tuple[Path, str]:
    """A SQLite store migrated only to ``0008_dashboard`` (an older release): its path and URL."""
    from alembic import command

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "0008_dashboard")
    finally:
        engine.dispose()
    return path, url


def test_an_older_schema_is_not_migrated_by_a_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, url = _old_store(tmp_path)
    result = _invoke(["org", "list", "--database-url", url], monkeypatch, tmp_path)
    assert result.exit_code == 1
    _one_error_line(result, str(path), "0008_dashboard", HEAD_REVISION, "agent-provision serve")
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert "failed_notification" not in inspect(connection).get_table_names()
        migrate(engine)  # a command that writes would do this
    finally:
        engine.dispose()
    listed = _invoke(["org", "list", "--database-url", url], monkeypatch, tmp_path)
    assert listed.exit_code == 0 and "no organizations" in listed.stdout


def test_reads_of_an_existing_store_work_and_create_no_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    added = _invoke(
        ["org", "add", "demo", "--salesforce-org-id", ORG_ID, "--database-url", url],
        monkeypatch,
        tmp_path,
    )
    assert added.exit_code == 0, added.stderr
    (tmp_path / "x.db.key").rename(tmp_path / "kept.key")
    shown = _invoke(["org", "url", "demo", "--database-url", url], monkeypatch, tmp_path)
    assert shown.exit_code == 2
    _one_error_line(shown, "no key file", str(tmp_path / "x.db.key"))
    assert not (tmp_path / "x.db.key").exists()
    (tmp_path / "kept.key").rename(tmp_path / "x.db.key")
    shown = _invoke(["org", "url", "demo", "--database-url", url], monkeypatch, tmp_path)
    assert shown.exit_code == 0 and shown.stdout.strip() == added.stdout.strip()


def test_the_probe_knows_the_newest_migration() -> None:
    assert HEAD_REVISION == head_revision()


def test_migrate_brings_an_older_store_to_this_release_and_then_reads_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, url = _old_store(tmp_path)
    first = _invoke(["migrate", "--database-url", url], monkeypatch, tmp_path)
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == (
        f"store {url}: schema revision 0008_dashboard -> {HEAD_REVISION}"
    )
    again = _invoke(["migrate", "--database-url", url], monkeypatch, tmp_path)
    assert again.stdout.strip() == f"store {url} is at schema revision {HEAD_REVISION}"
    assert _invoke(["org", "list", "--database-url", url], monkeypatch, tmp_path).exit_code == 0
    missing = tmp_path / "nowhere" / "x.db"
    refused = _invoke(["migrate", "--database-url", f"sqlite:///{missing}"], monkeypatch, tmp_path)
    assert refused.exit_code == 2 and not missing.parent.exists()
