"""A small periodic scheduler that ``serve`` runs in its lifespan (one per worker).

Each task has a name and an interval. Every ``tick`` (default 30 s) the scheduler tries to
claim the lease row ``"schedule:<name>"`` of ``job_lease`` until now + interval; only the
worker that claims it runs the task, so across every worker and host a task runs at most
once per interval. A task's own work should start jobs (``receiver/jobs.py``) when it acts
on organizations, so that it never overlaps with the same work started by a button or a
command.

Tasks are listed by :func:`receiver.periodic.periodic_tasks` (one line per task). A task is
``run(engine, now) -> None``; an exception is logged and the task runs again after its
interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from receiver._logging import LOGGER_NAME
from receiver.jobs import claim_lease, process_owner

__all__ = ["PeriodicTask", "Scheduler"]

log = logging.getLogger(LOGGER_NAME)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PeriodicTask:
    """``run(engine, now)`` at most once per ``every`` across all workers."""

    name: str
    every: timedelta
    run: Callable[[Engine, datetime], None]


class Scheduler:
    """Runs due :class:`PeriodicTask` s in a daemon thread (:meth:`start` / :meth:`stop`),
    or one pass at a time (:meth:`run_due`, for tests and one-shot use)."""

    def __init__(
        self,
        engine: Engine,
        tasks: list[PeriodicTask] | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        tick: float = 30.0,
    ) -> None:
        self.engine = engine
        self.tasks: list[PeriodicTask] = list(tasks or [])
        self.clock = clock
        self.tick = tick
        self.owner = process_owner()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, task: PeriodicTask) -> None:
        """Register one more task."""
        self.tasks.append(task)

    def run_due(self) -> list[str]:
        """Run every task whose interval has passed (and that no other worker claimed);
        return the names of those run."""
        ran: list[str] = []
        for task in self.tasks:
            now = self.clock()
            try:
                lease = claim_lease(
                    self.engine,
                    f"schedule:{task.name}",
                    owner=self.owner,
                    until=now + task.every,
                    now=now,
                )
            except Exception:  # the store is away: try at the next tick
                log.warning("scheduler: cannot claim %s (store unavailable)", task.name)
                continue
            if lease is None:
                continue
            ran.append(task.name)
            try:
                task.run(self.engine, now)
            except Exception:
                log.exception("scheduled task %s failed", task.name)
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(self.tick)

    def start(self) -> None:
        """Run due tasks now and then every ``tick`` seconds until :meth:`stop`."""
        if self._thread is not None or not self.tasks:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (waits for a running task up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
