"""Alembic environment of the agent store (package data: no alembic.ini at run time).

Run through :func:`receiver.db.migrate`, which passes an open connection (already inside a
transaction holding the migration lock) as ``config.attributes["connection"]``. Offline
mode (``--sql``) renders the DDL for the URL in ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context

import receiver.job_tables  # noqa: F401  (registers job, job_lease)
import receiver.salesforce_connection  # noqa: F401  (registers salesforce_connection)
import receiver.salesforce_oauth  # noqa: F401  (registers oauth_state)
from receiver import feature_switch as _feature_switch  # noqa: F401  (registers its table)
from receiver.dashboard import tables as _dashboard_tables  # noqa: F401  (registers tables)
from receiver.models import metadata
from receiver.provisioning_tables import FailedNotification  # noqa: F401 - registers the tables
from receiver.reconcile import tables as _reconcile_tables  # noqa: F401  (registers reconcile_plan)
from receiver.webhook_refusals import WebhookRefusal  # noqa: F401 - registers webhook_refusal

config = context.config


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through receiver.db.migrate(engine)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
