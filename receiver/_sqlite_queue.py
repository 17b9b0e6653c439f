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

The wait is bounded as a whole (the thread lock, then the ``flock``). ``flock`` itself has
no timeout, so the one thread of each process that holds the thread lock and finds the
``flock`` taken hands a blocking ``flock`` of a file descriptor of its own to a helper
thread and waits for it until the deadline; a helper that gets the lock after its waiter
gave up lets go of it at once. The kernel wakes a blocked ``flock`` as the holder lets go,
so the processes take turns. (Before, the waiting process polled with pauses of up to
5 ms, and a process with more writers queued on its thread lock took the ``flock`` again
at once every time: ``serve --workers 2`` had a p99 several times the p50.)
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
        self._held: int | None = None

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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._held = fd
            return True
        except BlockingIOError:
            pass
        assert self._path is not None
        waiter = _BlockingFlock(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        if not waiter.wait(deadline - time.monotonic()):
            return False
        self._held = waiter.fd
        return True

    def release(self) -> None:
        """Give the turn to the next writer."""
        self._depth -= 1
        if self._depth == 0 and self._held is not None:
            held, self._held = self._held, None
            if held == self._fd:
                fcntl.flock(held, fcntl.LOCK_UN)
            else:  # the helper's own descriptor: closing it lets go of its lock
                os.close(held)
        self._thread_lock.release()

    def _file(self) -> int:
        # A file descriptor inherited through fork() would share its lock with the parent:
        # open one per process.
        if self._fd is None or self._fd_pid != os.getpid():
            assert self._path is not None
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._fd_pid = os.getpid()
        return self._fd


class _BlockingFlock:
    """A blocking ``flock(fd, LOCK_EX)`` in a daemon thread, waited for with a timeout.
    ``fd`` is this waiter's own descriptor: it holds the lock once :meth:`wait` returned
    True (close it to let go); otherwise it is closed here or by the helper, which lets go
    of a lock it gets after :meth:`wait` gave up."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._guard = threading.Lock()
        self._done = threading.Event()
        self._taken = False
        self._abandoned = False
        threading.Thread(target=self._take, name="sqlite-writer-flock", daemon=True).start()

    def _take(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            taken = False
        else:
            taken = True
        with self._guard:
            if self._abandoned:
                os.close(self.fd)  # the waiter gave up: let go of the lock
            else:
                self._taken = taken
            self._done.set()

    def wait(self, timeout: float) -> bool:
        """True once the lock is held through :attr:`fd` (within ``timeout`` seconds)."""
        self._done.wait(max(0.0, timeout))
        with self._guard:
            if self._taken:
                return True
            self._abandoned = True
            if self._done.is_set():  # the flock failed: the helper is done with fd
                os.close(self.fd)
            return False
