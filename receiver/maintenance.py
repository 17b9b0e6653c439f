"""Store maintenance off the request path (issue 7 review weakness 10, issue 11 item 6).

Two tables grow with every message and are pruned here, never while a request waits:

- ``processed_notification``: notification ids older than
  ``Settings.processed_retention_hours`` (``AGENT_PROVISION_PROCESSED_RETENTION_HOURS``,
  default 168 h, at least 48 h: Salesforce retries an unacknowledged message for up to
  24 hours, https://help.salesforce.com/s/articleView?id=sf.workflow_om_considerations.htm);
- the provisioning log (``provisioning_message`` and its ``provisioning_event`` rows):
  messages received more than ``Settings.provisioning_log_retention_days``
  (``AGENT_PROVISION_PROVISIONING_LOG_RETENTION_DAYS``, default 90 days) ago.

Two dashboard tables grow with sign-ins and are pruned here too: failed sign-ins older
than the throttle's longest window (``receiver.dashboard.throttle.LONGEST_WINDOW``: they
count for nothing) and dashboard sessions that can never be used again (signed out,
ended by a password change, or past their idle or absolute lifetime,
``receiver.dashboard.auth.prune_sessions``).

:func:`check_search_index` is the daily ``search-index`` task: it indexes the agents
that their writer did not index for the Users search (a process of an earlier release
still serving the store; ``receiver.agent_search.repair_index``: one read-only scan of
the agents, then a write transaction only for what it found).

Each table is pruned in batches of :data:`BATCH_SIZE` rows, each batch its own short
transaction, so the SQLite writer queue (and PostgreSQL's row locks) are held for
milliseconds at a time and messages keep flowing between batches; one run stops after
:data:`MAX_BATCHES` batches per table and the next run goes on.

:func:`run_scheduled` is the ``store-maintenance`` task of ``receiver/periodic.py``: the
scheduler that ``serve``'s lifespan runs (``receiver/scheduler.py``) calls it in its own
thread at most once per :data:`PRUNE_INTERVAL` across all workers and hosts. A failed run
(store unavailable) is logged and retried after the interval.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from receiver._logging import LOGGER_NAME
from receiver.agent_search import repair_index
from receiver.db import transaction
from receiver.models import ProcessedNotification, ProvisioningEvent, ProvisioningMessage

if TYPE_CHECKING:
    from receiver.settings import Settings

__all__ = [
    "BATCH_SIZE",
    "MAX_BATCHES",
    "PRUNE_INTERVAL",
    "PruneResult",
    "prune_dashboard",
    "prune_processed_ids",
    "prune_provisioning_log",
    "run_maintenance",
    "check_search_index",
    "INDEX_CHECK_INTERVAL",
    "run_scheduled",
]

log = logging.getLogger(LOGGER_NAME)

#: Rows deleted per transaction.
BATCH_SIZE = 1000
#: Batches per table and run (a backlog is worked off over several runs).
MAX_BATCHES = 500
#: How often the store is pruned (the ``store-maintenance`` task's interval).
PRUNE_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """Rows deleted by one :func:`run_maintenance`: processed notification ids,
    provisioning log messages (their events went with them), failed sign-ins and
    dashboard sessions."""

    processed_ids: int
    log_messages: int
    sign_in_failures: int = 0
    dashboard_sessions: int = 0


def prune_processed_ids(
    engine: Engine, *, older_than: datetime, batch_size: int = BATCH_SIZE
) -> int:
    """Forget processed notification ids recorded before ``older_than`` (aware UTC), in
    batches of ``batch_size``, oldest first; returns how many. Raises
    :class:`~sf_metadata.errors.StoreUnavailable`."""
    total = 0
    for _ in range(MAX_BATCHES):
        with transaction(engine) as session:
            rows = session.exec(
                select(ProcessedNotification.organization_id, ProcessedNotification.notification_id)
                .where(col(ProcessedNotification.processed_at) < older_than)
                .order_by(col(ProcessedNotification.processed_at))
                .limit(batch_size)
            ).all()
            by_org: dict[str, list[str]] = defaultdict(list)
            for org_id, notification_id in rows:
                by_org[org_id].append(notification_id)
            for org_id, ids in by_org.items():
                session.exec(
                    delete(ProcessedNotification).where(
                        col(ProcessedNotification.organization_id) == org_id,
                        col(ProcessedNotification.notification_id).in_(ids),
                    )
                )
        total += len(rows)
        if len(rows) < batch_size:
            break
    return total


def prune_provisioning_log(
    engine: Engine, *, older_than: datetime, batch_size: int = BATCH_SIZE
) -> int:
    """Delete provisioning log messages received before ``older_than`` (aware UTC) with
    their events, in batches of ``batch_size`` messages, oldest id first; returns how many
    messages. Raises :class:`~sf_metadata.errors.StoreUnavailable`."""
    total = 0
    for _ in range(MAX_BATCHES):
        with transaction(engine) as session:
            ids = list(
                session.exec(
                    select(ProvisioningMessage.id)
                    .where(col(ProvisioningMessage.received_at) < older_than)
                    .order_by(col(ProvisioningMessage.id))
                    .limit(batch_size)
                ).all()
            )
            if ids:
                session.exec(
                    delete(ProvisioningEvent).where(col(ProvisioningEvent.message_id).in_(ids))
                )
                session.exec(
                    delete(ProvisioningMessage).where(col(ProvisioningMessage.id).in_(ids))
                )
        total += len(ids)
        if len(ids) < batch_size:
            break
    return total


def prune_dashboard(
    engine: Engine,
    *,
    now: datetime,
    session_idle: timedelta,
    session_absolute: timedelta,
    batch_size: int = BATCH_SIZE,
) -> tuple[int, int]:
    """Delete failed sign-ins that count for nothing any more and dashboard sessions that
    can never be used again (see the module docstring), in batches; returns how many of
    each. Raises :class:`~sf_metadata.errors.StoreUnavailable`."""
    from receiver.dashboard.auth import prune_sessions
    from receiver.dashboard.throttle import prune_failures

    failures = sessions = 0
    for _ in range(MAX_BATCHES):
        with transaction(engine) as session:
            n = prune_failures(session, now=now, limit=batch_size)
        failures += n
        if n < batch_size:
            break
    for _ in range(MAX_BATCHES):
        with transaction(engine) as session:
            n = prune_sessions(
                session, now=now, idle=session_idle, absolute=session_absolute, limit=batch_size
            )
        sessions += n
        if n < batch_size:
            break
    return failures, sessions


def run_maintenance(
    engine: Engine,
    *,
    now: datetime,
    processed_retention: timedelta,
    log_retention: timedelta,
    batch_size: int = BATCH_SIZE,
    session_idle: timedelta = timedelta(minutes=60),
    session_absolute: timedelta = timedelta(hours=12),
) -> PruneResult:
    """One maintenance run (blocking): every prune, with cut-offs ``now`` minus each
    retention, and the dashboard's sessions past ``session_idle`` or
    ``session_absolute`` (the settings' defaults unless given). Raises
    :class:`~sf_metadata.errors.StoreUnavailable`."""
    processed = prune_processed_ids(
        engine, older_than=now - processed_retention, batch_size=batch_size
    )
    messages = prune_provisioning_log(engine, older_than=now - log_retention, batch_size=batch_size)
    failures, sessions = prune_dashboard(
        engine,
        now=now,
        session_idle=session_idle,
        session_absolute=session_absolute,
        batch_size=batch_size,
    )
    return PruneResult(processed, messages, failures, sessions)


def run_scheduled(engine: Engine, now: datetime, settings: Settings) -> PruneResult:
    """The ``store-maintenance`` periodic task (``receiver/periodic.py``): one
    :func:`run_maintenance` with the retentions of ``settings``, its result logged.
    Raises :class:`~sf_metadata.errors.StoreUnavailable` (the scheduler logs it and runs
    the task again after its interval)."""
    result = run_maintenance(
        engine,
        now=now,
        processed_retention=timedelta(hours=settings.processed_retention_hours),
        log_retention=timedelta(days=settings.provisioning_log_retention_days),
        session_idle=timedelta(minutes=settings.dashboard_idle_minutes),
        session_absolute=timedelta(hours=settings.dashboard_session_hours),
    )
    if result.processed_ids or result.log_messages:
        log.info(
            "store maintenance: forgot %d processed notification id(s), deleted %d "
            "provisioning log message(s) past their retention",
            result.processed_ids,
            result.log_messages,
        )
    if result.sign_in_failures or result.dashboard_sessions:
        log.info(
            "store maintenance: deleted %d expired failed sign-in(s) and %d ended "
            "dashboard session(s)",
            result.sign_in_failures,
            result.dashboard_sessions,
        )
    return result


#: How often the Users search index is checked against the agents (the ``search-index``
#: task's interval): one scan of every agent, about 0.4 to 1.1 s at 100,000 (SQLite
#: 3.40, read-only: no writer waits on it).
INDEX_CHECK_INTERVAL = timedelta(days=1)


def check_search_index(engine: Engine) -> int:
    """The ``search-index`` periodic task (``receiver/periodic.py``): index the agents a
    writer left unindexed (``receiver.agent_search.repair_index``; a process of an
    earlier release still serving the store), logged when there were any; returns how
    many. Raises :class:`~sf_metadata.errors.StoreUnavailable`."""
    repaired = repair_index(engine)
    if repaired:
        log.warning(
            "search index check: indexed %d agent(s) for the Users search that their "
            "writer had not indexed (a process of an earlier release?)",
            repaired,
        )
    return repaired
