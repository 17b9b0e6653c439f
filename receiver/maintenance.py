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

:func:`maintenance_task` is entered by the app's lifespan (``receiver.app.create_app``):
each server process runs :func:`run_maintenance` in a worker thread
:data:`FIRST_RUN_DELAY` after it starts and then every :data:`PRUNE_INTERVAL`. A failed
run (store unavailable) is logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from receiver._logging import LOGGER_NAME
from receiver.db import transaction
from receiver.models import ProcessedNotification, ProvisioningEvent, ProvisioningMessage
from sf_metadata.errors import StoreUnavailable

if TYPE_CHECKING:
    from receiver.context import ReceiverContext

__all__ = [
    "BATCH_SIZE",
    "FIRST_RUN_DELAY",
    "MAX_BATCHES",
    "PRUNE_INTERVAL",
    "PruneResult",
    "maintenance_task",
    "prune_processed_ids",
    "prune_provisioning_log",
    "run_maintenance",
]

log = logging.getLogger(LOGGER_NAME)

#: Rows deleted per transaction.
BATCH_SIZE = 1000
#: Batches per table and run (a backlog is worked off over several runs).
MAX_BATCHES = 500
#: How often each server process prunes.
PRUNE_INTERVAL = timedelta(hours=1)
#: Delay between a process's start and its first run (startup stays quick).
FIRST_RUN_DELAY = timedelta(minutes=1)


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


async def _run_once(context: ReceiverContext) -> PruneResult | None:
    settings = context.settings
    now = context.clock()
    try:
        result = await run_in_threadpool(
            run_maintenance,
            context.engine,
            now=now,
            processed_retention=timedelta(hours=settings.processed_retention_hours),
            log_retention=timedelta(days=settings.provisioning_log_retention_days),
        )
    except StoreUnavailable as error:
        log.warning("store maintenance failed, retried later: %s", error.message)
        return None
    context.maintenance.last_prune = now
    if result.processed_ids or result.log_messages:
        log.info(
            "store maintenance: forgot %d processed notification id(s), deleted %d "
            "provisioning log message(s) past their retention",
            result.processed_ids,
            result.log_messages,
        )
    return result


async def _loop(context: ReceiverContext, first_delay: float, interval: float) -> None:
    await asyncio.sleep(first_delay)
    while True:
        try:
            await _run_once(context)
        except Exception:  # noqa: BLE001 - never let the loop die; the next run retries
            log.exception("store maintenance failed unexpectedly")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def maintenance_task(
    context: ReceiverContext,
    *,
    first_delay: timedelta | None = None,
    interval: timedelta | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run the periodic maintenance of this process while the block runs (the app's
    lifespan); yields the task, cancelled when the block ends. ``first_delay`` and
    ``interval`` default to :data:`FIRST_RUN_DELAY` and :data:`PRUNE_INTERVAL`."""
    delay = first_delay if first_delay is not None else FIRST_RUN_DELAY
    every = interval if interval is not None else PRUNE_INTERVAL
    task = asyncio.create_task(
        _loop(context, delay.total_seconds(), every.total_seconds()),
        name="agent-provision-maintenance",
    )
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
