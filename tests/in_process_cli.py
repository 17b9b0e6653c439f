"""``agent-provision`` run in the test process (click's ``CliRunner``) for the tests that
set up or read a store beside a real ``serve`` process: a CLI subprocess costs a Python
start and the imports (about 1 s of CPU each); the server under test still runs in its
own process (``tests/serve_process.py``, ``bench._server.ServerProcess``).

- ``run_cli(env, *args, stdin=None) -> str``: the command's standard output (stripped),
  run with exactly ``env`` as its environment (variables absent from it are unset
  meanwhile); a non-zero exit fails the test.
- ``InProcessCli``: ``bench._server.Cli`` (same ``run``/``add_org``/``users``; a non-zero
  exit raises ``RuntimeError`` with the command's standard error), each call in-process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bench._server import Cli

__all__ = ["InProcessCli", "run_cli"]


def _invoke(
    env: Mapping[str, str], args: tuple[str, ...], stdin: str | None
) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from receiver.cli import main

    overrides: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    overrides.update(env)
    result = CliRunner().invoke(main, list(args), input=stdin, env=overrides)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def run_cli(env: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    """Standard output of ``agent-provision ARGS`` (stripped), run in this process with
    exactly ``env`` as its environment."""
    code, stdout, stderr = _invoke(env, args, stdin)
    assert code == 0, stderr
    return stdout.strip()


class InProcessCli(Cli):
    """:class:`bench._server.Cli` with every call run in this process."""

    def run(self, *args: str, timeout: float = 120.0) -> str:
        """Standard output of ``agent-provision ARGS --database-url URL`` (``timeout``
        is not enforced in-process)."""
        del timeout
        code, stdout, stderr = _invoke(self.env, (*args, "--database-url", self.database_url), None)
        if code != 0:
            raise RuntimeError(f"{' '.join(args)} exited {code}: {stderr.strip()}")
        return stdout
