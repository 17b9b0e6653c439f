"""``org url`` answers without SQLAlchemy on a plain SQLite store (``receiver.quick_read``,
issue 7 "a CLI that answers at once"; the time itself is measured by
``bench/cli_startup.py``), with the same answer as the SQLAlchemy path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.db import make_engine, transaction
from receiver.organizations import get_organization, reveal_token, webhook_url
from receiver.quick_read import quick_webhook_url
from receiver.secrets import load_key
from sf_metadata.errors import OrganizationNotFound

ORG_ID = "00D000000000001EAA"


def _add(url: str, cwd: Path, *names: str) -> None:
    for name in names:
        result = CliRunner().invoke(
            main,
            ["org", "add", name, "--salesforce-org-id", ORG_ID, "--database-url", url],
            env={"AGENT_PROVISION_SECRET_KEY": None},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stderr


def _slow(url: str, name: str) -> str:
    engine = make_engine(url)
    try:
        with transaction(engine, read_only=True) as session:
            record = get_organization(session, name)
            return webhook_url(record, reveal_token(record, load_key(url)))
    finally:
        engine.dispose()


def test_the_quick_read_gives_the_sqlalchemy_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _add(url, tmp_path, "demo", "other-1")
    for name in ("demo", "other-1"):
        assert quick_webhook_url(url, name, None) == _slow(url, name)
    with pytest.raises(OrganizationNotFound, match="'nope' is not registered"):
        quick_webhook_url(url, "nope", None)


def test_other_urls_take_the_sqlalchemy_path_with_the_same_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _add(url, tmp_path, "demo")
    with_query = f"{url}?timeout=5"
    assert quick_webhook_url(with_query, "demo", None) is None
    assert quick_webhook_url("postgresql+psycopg://u@h/db", "demo", None) is None
    shown = CliRunner().invoke(
        main,
        ["org", "url", "demo", "--database-url", with_query],
        env={"AGENT_PROVISION_SECRET_KEY": None},
        catch_exceptions=False,
    )
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.strip() == _slow(url, "demo")


def test_org_url_loads_neither_sqlalchemy_nor_pydantic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _add(url, tmp_path, "demo")
    probe = (
        "import json, sys\n"
        "from receiver.cli import main\n"
        "try:\n"
        "    main(['org', 'url', 'demo'])\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'sqlmodel', 'pydantic', 'alembic',"
        " 'receiver.models') if m in sys.modules)\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_PROVISION_")}
    env["AGENT_PROVISION_DATABASE_URL"] = url
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.stdout.strip() == _slow(url, "demo")
    assert json.loads(out.stderr.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
