"""The SQLite writer queue: threads of one process and other processes take turns."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

from receiver._sqlite_queue import WriteQueue

_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy")
else:
    print("free")
"""


def _other_process_sees(lock_path: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", _PROBE, str(lock_path)], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_another_process_waits_while_a_writer_holds_the_queue(tmp_path: Path) -> None:
    lock_path = tmp_path / "store.db-writer.lock"
    queue = WriteQueue(lock_path)
    assert queue.acquire(timeout=1)
    assert queue.acquire(timeout=1)  # re-entrant in one thread
    queue.release()
    assert _other_process_sees(lock_path) == "busy"
    queue.release()
    assert _other_process_sees(lock_path) == "free"
    assert oct(os.stat(lock_path).st_mode & 0o777) == "0o600"


def test_a_second_thread_times_out_then_gets_its_turn(tmp_path: Path) -> None:
    queue = WriteQueue(tmp_path / "w.lock")
    assert queue.acquire(timeout=1)
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(queue.acquire(timeout=0.05)))
    waiter.start()
    waiter.join()
    assert outcome == [False]
    queue.release()
    assert queue.acquire(timeout=1)
    queue.release()


def test_in_memory_stores_queue_threads_only(tmp_path: Path) -> None:
    queue = WriteQueue(None)
    assert queue.acquire(timeout=1)
    queue.release()
    assert list(tmp_path.iterdir()) == []


def test_the_lock_is_released_for_others_when_the_holder_process_dies(tmp_path: Path) -> None:
    lock_path = tmp_path / "w.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
            str(lock_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        fd = os.open(lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the lock should be held by the other process")
            except BlockingIOError:
                pass
            holder.kill()
            holder.wait(timeout=10)
            queue = WriteQueue(lock_path)
            assert queue.acquire(timeout=1)
            queue.release()
        finally:
            os.close(fd)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


_HOLDER = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.readline()\n"
    "fcntl.flock(fd, fcntl.LOCK_UN)\nprint('released', flush=True)\nsys.stdin.readline()\n"
)


def _holder(lock_path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def _tell(holder: subprocess.Popen[str]) -> str:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    return holder.stdout.readline().strip()


def test_a_writer_waiting_for_another_process_gets_its_turn_when_it_lets_go(
    tmp_path: Path,
) -> None:
    lock_path = tmp_path / "w.lock"
    holder = _holder(lock_path)
    try:
        queue = WriteQueue(lock_path)
        outcome: list[bool] = []
        done = threading.Event()

        def write() -> None:
            outcome.append(queue.acquire(timeout=60))
            done.wait(60)
            queue.release()

        waiter = threading.Thread(target=write)
        waiter.start()
        assert outcome == []  # the other process holds it
        assert _tell(holder) == "released"
        while not outcome and waiter.is_alive():
            waiter.join(timeout=0.01)
        assert outcome == [True]
        assert _other_process_sees(lock_path) == "busy"
        done.set()
        waiter.join(timeout=60)
        assert _other_process_sees(lock_path) == "free"
        _tell(holder)
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_writer_that_gave_up_waiting_leaves_the_lock_to_the_others(tmp_path: Path) -> None:
    lock_path = tmp_path / "w.lock"
    holder = _holder(lock_path)
    try:
        queue = WriteQueue(lock_path)
        assert queue.acquire(timeout=0.05) is False
        assert _tell(holder) == "released"
        # the helper still blocked in flock takes the lock and lets go of it at once
        assert queue.acquire(timeout=60)
        queue.release()
        assert _other_process_sees(lock_path) == "free"
        _tell(holder)
    finally:
        holder.kill()
        holder.wait(timeout=10)
