"""A real ``agent-provision serve`` process on a free loopback port, for the tests that
need uvicorn itself (``tests/cli/test_serve.py``, the browser tests)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench._server import wait_until_listening

__all__ = ["free_port", "serve_process"]

_START_TIMEOUT_S = 60


def free_port() -> int:
    """A loopback TCP port nothing listens on (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve_process(
    env: dict[str, str],
    port: int,
    *,
    cwd: Path,
    log_path: Path,
    args: Sequence[str] = (),
    timeout_s: float = 0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``agent-provision serve --port PORT [args]`` with ``env`` (its output in
    ``log_path``) until ``/readyz`` answers 200 (bounded: ``timeout_s``, default 60 s),
    yield it, then stop it with SIGINT (SIGKILL after 20 s)."""
    deadline = time.monotonic() + (timeout_s or _START_TIMEOUT_S)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from receiver.cli import main; main()",
                "serve",
                "--port",
                str(port),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
        try:
            while True:
                # a TCP probe until uvicorn listens (an HTTP client per try costs the starting
                # server CPU), then /readyz
                wait_until_listening(port, alive=lambda: process.poll() is None, deadline=deadline)
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
