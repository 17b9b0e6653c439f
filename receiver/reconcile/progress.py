"""What a reconcile run reports and runs under: :class:`ProgressSink` (progress in
users, the CLI's bar and the dashboard's Reconcile page), :func:`gc_paused` (the cyclic
garbage collector paused for the run) and the :data:`Clock` it reads the time from."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "NoProgress", "ProgressSink", "gc_paused", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, aware UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


class _GcPause:
    """How many runs pause the collector now, and whether it was enabled before them."""

    lock = threading.Lock()
    runs = 0
    was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector paused while a run reads and plans: a 50,000-user
    run builds some million acyclic objects that every collection would scan again (a
    third of its CPU, ``bench/reconcile.py``); reference counting frees them as usual.
    Process-wide, so nested and concurrent runs share one pause (the collector is enabled
    again, if it was, when the last one ends)."""
    with _GcPause.lock:
        if _GcPause.runs == 0:
            _GcPause.was_enabled = gc.isenabled()
            gc.disable()
        _GcPause.runs += 1
    try:
        yield
    finally:
        with _GcPause.lock:
            _GcPause.runs -= 1
            if _GcPause.runs == 0 and _GcPause.was_enabled:
                gc.enable()


class ProgressSink(Protocol):
    """Where a run reports progress, in users: ``total`` once the first page says how
    many, ``advance`` per page read (and per batch applied), ``phase`` on each step
    (``reading``, ``planning``, ``applying``)."""

    def phase(self, name: str) -> None: ...

    def total(self, users: int) -> None: ...

    def advance(self, users: int) -> None: ...


class NoProgress:
    """A sink that reports nothing."""

    def phase(self, name: str) -> None:
        pass

    def total(self, users: int) -> None:
        pass

    def advance(self, users: int) -> None:
        pass
