"""Fixtures of the CLI tests: ``run``, the CLI (click's CliRunner) on the test store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from receiver.cli import main

Run = Callable[..., Result]


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(*args, url=True)``: invoke the CLI with ``--database-url`` appended (after the
    command's own arguments), in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENT_PROVISION_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENT_PROVISION_SECRET_KEY", raising=False)

    def invoke(*args: str, url: bool = True) -> Result:
        argv = [*args, "--database-url", database_url] if url else list(args)
        return CliRunner().invoke(main, argv, catch_exceptions=False)

    return invoke
