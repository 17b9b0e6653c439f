"""Store maintenance off the request path (issue 7 review weakness 10, issue 11 item 6).

Two tables grow with every message and are pruned here, never while a request waits:

- ``processed_notification``: notification ids older than
  ``Settings.processed_retention_hours`` (``AGENT_PROVISION_PROCESSED_RETENTION_HOURS``,
  default 168 h, at least 48 h: Salesforce retries an unacknowledged message for up to
  24 hours, https://help.salesforce.com/s/articleView?id=sf.workflow_om_considerations.htm);
- the provisioning log (``provisioning_message`` and its ``provisioning_event`` rows):
  messages received more than ``Settings.provisioning_log_retention_days``
  (``AGENT_PROVISION_PROVISIONING_LOG_RETENTION_DAYS``, default 90 days) ago.

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
from receiver.db import transaction
from receiver.models import ProcessedNotification, ProvisioningEvent, ProvisioningMessage

if TYPE_CHECKING:
    from receiver.settings import Settings

__all__ = [
    "BATCH_SIZE",
    "MAX_BATCHES",
    "PRUNE_INTERVAL",
    "PruneResult",
    "prune_processed_ids",
    "prune_provisioning_log",
    "run_maintenance",
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
    """Rows deleted by one :func:`run_maintenance`: processed notification ids, and
    provisioning log messages (their events went with them)."""

    processed_ids: int
    log_messages: int


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


def run_maintenance(
    engine: Engine,
    *,
    now: datetime,
    processed_retention: timedelta,
    log_retention: timedelta,
    batch_size: int = BATCH_SIZE,
) -> PruneResult:
    """One maintenance run (blocking): both prunes, with cut-offs ``now`` minus each
    retention. Raises :class:`~sf_metadata.errors.StoreUnavailable`."""
    processed = prune_processed_ids(
        engine, older_than=now - processed_retention, batch_size=batch_size
    )
    messages = prune_provisioning_log(engine, older_than=now - log_retention, batch_size=batch_size)
    return PruneResult(processed, messages)


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
    )
    if result.processed_ids or result.log_messages:
        log.info(
            "store maintenance: forgot %d processed notification id(s), deleted %d "
            "provisioning log message(s) past their retention",
            result.processed_ids,
            result.log_messages,
        )
    return result
