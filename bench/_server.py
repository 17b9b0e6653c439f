"""Run the receiver as a real subprocess on loopback, and drive its CLI.

The server is ``agent-provision serve --host 127.0.0.1 --port P [--workers N]
--database-url URL`` (CONTRACT section 4), started in its own process group so that a stop
(or a SIGKILL in a fault test) reaches the uvicorn supervisor and every worker. Peak RSS is
sampled over the whole process tree with psutil.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

try:
    import psutil
except ImportError:  # the bench extra is absent (CI installs .[test]): no RSS, group kill only
    psutil = None  # type: ignore[assignment]

__all__ = ["Cli", "ServerProcess", "free_port", "harness_env", "wait_until_listening"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def _agent_provision() -> list[str]:
    """The console script beside the running interpreter (the project's venv)."""
    script = Path(sys.executable).with_name("agent-provision")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from receiver.cli import main; main()"]


def harness_env() -> dict[str, str]:
    """Environment for one harness run: a fresh ``AGENT_PROVISION_SECRET_KEY`` (Fernet),
    so no key file is written into the working tree."""
    from cryptography.fernet import Fernet

    return {"AGENT_PROVISION_SECRET_KEY": Fernet.generate_key().decode("ascii")}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(
    port: int, *, alive: Callable[[], bool], deadline: float, poll_s: float = 0.02
) -> bool:
    """Whether 127.0.0.1:``port`` accepted a TCP connection before ``deadline``
    (``time.monotonic()``) while ``alive()`` held. A refused connection costs microseconds,
    where an HTTP client per try costs about 40 ms of CPU (httpx builds an SSL context), CPU
    the starting server then lacks. uvicorn with one worker listens once the app started;
    its supervisor (``--workers N``) listens before its workers answer."""
    while alive() and time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(poll_s)
    return False


class Cli:
    """Runs ``agent-provision`` subcommands against one store.

    Every call passes ``--database-url``; a non-zero exit raises ``RuntimeError`` with the
    command's standard error (these are harness failures, not project errors).
    """

    def __init__(self, database_url: str, *, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.env = {**os.environ, **(env or {})}

    def run(self, *args: str, timeout: float = 120.0) -> str:
        """Standard output of ``agent-provision ARGS --database-url URL``."""
        cmd = [*_agent_provision(), *args, "--database-url", self.database_url]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=REPO_ROOT
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def add_org(self, name: str, salesforce_org_id: str, *, base_url: str) -> str:
        """Register and enable ``name``; return its webhook URL (token included)."""
        added = json.loads(
            self.run(
                "org",
                "add",
                name,
                "--salesforce-org-id",
                salesforce_org_id,
                "--base-url",
                base_url,
                "--json",
            )
        )
        self.run("org", "enable", name)
        return str(added["webhookUrl"])

    def users(self, name: str) -> list[dict[str, Any]]:
        """``users NAME --json``: the agent list."""
        data = json.loads(self.run("users", name, "--json"))
        assert isinstance(data, list)
        return data


class ServerProcess:
    """``agent-provision serve`` on 127.0.0.1 in its own process group.

    ``start()`` waits until the webhook answers (any HTTP status) or raises
    ``RuntimeError`` after ``start_timeout`` seconds; ``kill()`` sends SIGKILL to the whole
    group; ``stop()`` sends SIGTERM then SIGKILL. ``peak_rss`` (bytes) is the largest sum of
    RSS over the process tree seen by the sampler while running (0 without psutil, which
    the bench extra installs, or with ``sample_rss=False``: the tests do not need it, and a
    sample every 50 ms walks every process of the machine, about 7 ms of CPU each).
    """

    def __init__(
        self,
        database_url: str,
        *,
        port: int | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        sample_rss: bool = True,
    ) -> None:
        self.database_url = database_url
        self.sample_rss = sample_rss
        self.port = port or free_port()
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.peak_rss = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        self._log: Any = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, start_timeout: float = 60.0) -> ServerProcess:
        """Start the server and wait until it answers HTTP."""
        cmd = [
            *_agent_provision(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--database-url",
            self.database_url,
        ]
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=self._log,
            env=self.env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + start_timeout
        proc = self._proc
        while True:
            wait_until_listening(self.port, alive=lambda: proc.poll() is None, deadline=deadline)
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited {proc.returncode} (log: {self.log_path})")
            try:
                httpx.get(self.base_url + "/", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"serve did not answer in {start_timeout} s") from None
                time.sleep(0.1)
        # uvicorn --workers: the supervisor answers nothing itself; wait for every worker
        # (multiprocessing's resource tracker is a child too) and, with a log, until each
        # one said its startup is complete (else a burst of connections finds one missing).
        if self.workers > 1 and psutil is not None:
            while time.monotonic() < deadline and (
                len(self._workers()) < self.workers or self._started() < self.workers
            ):
                time.sleep(0.1)
        if self.sample_rss:
            self._sampling.set()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _tree(self) -> list[Any]:
        if self._proc is None or psutil is None:
            return []
        try:
            root = psutil.Process(self._proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by the server's process tree (0 without
        psutil). Read it before :meth:`stop`: workers that exited are not counted."""
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def _workers(self) -> list[Any]:
        """The worker processes (uvicorn's multiprocessing children that run a server)."""
        found = []
        for proc in self._tree()[1:]:
            try:
                if "spawn_main" in " ".join(proc.cmdline()):
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
        return found

    def _started(self) -> int:
        """Workers whose startup completed, by the log (``workers`` without a log)."""
        if self.log_path is None:
            return self.workers
        try:
            return self.log_path.read_bytes().count(b"Application startup complete")
        except OSError:
            return 0

    def worker_cpu_seconds(self) -> dict[int, float]:
        """User + system CPU seconds of each worker process so far, by pid (the uvicorn
        supervisor and multiprocessing's resource tracker apart; with one worker, the
        server process itself; empty without psutil)."""
        seconds: dict[int, float] = {}
        for proc in self._workers() if self.workers > 1 else self._tree()[:1]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds[proc.pid] = times.user + times.system
        return seconds

    def _sample(self) -> None:
        while self._sampling.is_set():
            total = 0
            for proc in self._tree():
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak_rss = max(self.peak_rss, total)
            time.sleep(0.05)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the server's whole process group (supervisor and workers) and reap it."""
        self._sampling.clear()
        tree = self._tree()
        self._signal(signal.SIGKILL)
        for proc in tree:  # a worker may have left the group: kill it by pid too
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if self._proc is not None:
            self._proc.wait(timeout=30)
        if psutil is not None:
            psutil.wait_procs(tree, timeout=10)
        self._close_log()

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL it if it is still there after 15 s."""
        self._sampling.clear()
        if self._proc is None:
            return
        tree = self._tree()
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._proc.wait(timeout=15)
        alive = psutil.wait_procs(tree, timeout=5)[1] if psutil is not None else []
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self._close_log()

    def _close_log(self) -> None:
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
