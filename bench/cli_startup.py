"""How long the CLI takes to answer (issue 7: ``agent-provision org url demo`` under 0.3 s).

Runs each command ``--runs`` times as a fresh process (``.venv/bin/agent-provision``, or
``python -m receiver.cli`` style through ``--cli``) against a SQLite store made here (one
organization, ``demo``), and prints, per command, the median wall time and the median CPU
time (user + system of the child, ``os.wait4``), with the load average, since wall time
under load lies::

    .venv/bin/python -m bench.cli_startup --runs 21

Nothing is asserted: the figure goes in README ("CLI start time").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "org url demo": ["org", "url", "demo"],
    "org show demo": ["org", "show", "demo"],
    "users demo --json": ["users", "demo", "--json"],
    "--help": ["--help"],
}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("agent-provision")
    if script.exists():
        return [str(script)]
    found = shutil.which("agent-provision")
    if found is None:
        raise SystemExit("agent-provision is not installed in this environment")
    return [found]


def _run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run, which must exit 0."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per command (median)")
    args = parser.parse_args(argv)
    cli = _cli()
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp:
        cwd = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_PROVISION_")}
        env["AGENT_PROVISION_DATABASE_URL"] = f"sqlite:///{cwd / 'store.db'}"
        subprocess.run(
            [*cli, "org", "add", "demo", "--salesforce-org-id", "00D000000000001EAA"],
            env=env,
            cwd=cwd,
            check=True,
            capture_output=True,
        )
        _say(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        _say(f"{'command':<20} {'median wall s':>14} {'median CPU s':>13}  ({args.runs} runs)")
        for label, command in COMMANDS.items():
            _run_once([*cli, *command], env, cwd)  # warm the page cache and .pyc files
            runs = [_run_once([*cli, *command], env, cwd) for _ in range(args.runs)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            _say(f"{label:<20} {wall:>14.3f} {cpu:>13.3f}")
        _say(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
