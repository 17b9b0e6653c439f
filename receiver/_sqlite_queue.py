"""Private: one queue for the SQLite store's write transactions, across threads and
processes.

SQLite admits one writer at a time. A transaction that finds the database locked waits in
SQLite's busy handler, which sleeps and retries with growing pauses; a later request can
slip in during a pause, so under load the unlucky ones wait seconds (``bench/ingest.py``
measured a p99 of about 3 s at 4 clients before this queue). Here writers wait instead on
a thread lock (this process) and then on an exclusive ``flock`` of ``<store>-writer.lock``
(other ``serve --workers`` processes), both woken by the kernel as soon as the holder is
done; ``BEGIN IMMEDIATE`` then finds the database free. A process that dies releases its
``flock`` with it. Readers never queue here (WAL lets them read during a write).

The wait is bounded as a whole (the thread lock, then the ``flock``): ``flock`` itself has
no timeout, so the one thread of each process that holds the thread lock polls it
non-blocking, with pauses growing from 0.5 ms to 5 ms (at most one poller per process, so
the cost stays small, and a freed lock is taken within 5 ms).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

__all__ = ["WriteQueue"]


class WriteQueue:
    """Re-entrant in one thread; ``lock_path`` ``None`` (in-memory store) queues threads
    only. Raises ``OSError`` from :meth:`acquire` when the lock file cannot be opened."""

    def __init__(self, lock_path: Path | None) -> None:
        self._thread_lock = threading.RLock()
        self._path = lock_path
        self._fd: int | None = None
        self._fd_pid = 0
        self._depth = 0

    def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds in all for this process's turn and then the other
        processes'. True once held; False when the time ran out (nothing is held then)."""
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):
            return False
        if self._depth == 0 and self._path is not None:
            try:
                taken = self._flock_until(deadline)
            except OSError:
                self._thread_lock.release()
                raise
            if not taken:
                self._thread_lock.release()
                return False
        self._depth += 1
        return True

    def _flock_until(self, deadline: float) -> bool:
        fd = self._file()
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 2, 0.005)

    def release(self) -> None:
        """Give the turn to the next writer."""
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def _file(self) -> int:
        # A file descriptor inherited through fork() would share its lock with the parent:
        # open one per process.
        if self._fd is None or self._fd_pid != os.getpid():
            assert self._path is not None
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._fd_pid = os.getpid()
        return self._fd
