"""The periodic tasks ``serve`` runs (``receiver/scheduler.py``): one line per task.

- ``keep-alive`` (daily): use each stored OAuth connection idle for 25 days once
  (``receiver/keepalive.py``).
- ``store-maintenance`` (hourly): prune processed notification ids and the provisioning
  log past their retentions, expired failed sign-ins and ended dashboard sessions, in
  batches, off the request path (``receiver/maintenance.py``).
- ``search-index`` (daily): index the agents a writer left out of the Users search
  (``receiver/maintenance.py``, ``check_search_index``).
- ``reconcile`` (every :data:`RECONCILE_INTERVAL`): an incremental reconcile of every
  enabled organization with a stored connection (``receiver/reconcile/jobs.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from receiver.maintenance import INDEX_CHECK_INTERVAL, PRUNE_INTERVAL
from receiver.scheduler import PeriodicTask
from receiver.settings import Settings

__all__ = ["RECONCILE_INTERVAL", "periodic_tasks"]

#: Between incremental reconciles (Entra's incremental cycles run every 20-40 minutes,
#: reference ``dashboard-anchors.md`` (c)).
RECONCILE_INTERVAL = timedelta(minutes=30)


def periodic_tasks(settings: Settings) -> list[PeriodicTask]:
    """The tasks for a receiver configured by ``settings``."""

    def keep_alive(engine: Engine, now: datetime) -> None:
        from receiver.keepalive import keep_alive as run
        from receiver.secrets import load_key

        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        client_secret = settings.salesforce_client_secret
        run(
            engine,
            now,
            key=load_key(settings.database_url, secret),
            client_id=settings.salesforce_client_id,
            client_secret=client_secret.get_secret_value() if client_secret else None,
        )

    def store_maintenance(engine: Engine, now: datetime) -> None:
        from receiver.maintenance import run_scheduled

        run_scheduled(engine, now, settings)

    def search_index(engine: Engine, now: datetime) -> None:
        from receiver.maintenance import check_search_index

        check_search_index(engine)

    def reconcile(engine: Engine, now: datetime) -> None:
        from receiver.reconcile.jobs import scheduled_runs, stored_reader_factory

        scheduled_runs(engine, now, stored_reader_factory(engine, settings))

    return [
        PeriodicTask("keep-alive", timedelta(days=1), keep_alive),
        PeriodicTask("store-maintenance", PRUNE_INTERVAL, store_maintenance),
        PeriodicTask("search-index", INDEX_CHECK_INTERVAL, search_index),
        PeriodicTask("reconcile", RECONCILE_INTERVAL, reconcile),
    ]
