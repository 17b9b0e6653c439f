"""Keep stored OAuth connections alive (CONTRACT section 7; reference
``salesforce-facts-2026.md`` item 3: a refresh token left idle for 30 days expires).

:func:`keep_alive` (a periodic task of ``serve``, daily) refreshes the access token of each
stored ``oauth`` connection that has not been used for :data:`IDLE_LIMIT` (25 days), once,
as a ``keep-alive`` job of that organization (never beside another one). The rotated
refresh token is saved as for any refresh. A refused refresh marks the connection
"reconnect" with Salesforce's reason, which the CRM page shows. Other credential kinds
have no refresh token to keep alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import requests
from sqlalchemy.engine import Engine

from receiver._logging import LOGGER_NAME
from receiver.db import transaction
from receiver.jobs import SCHEDULER, JobKind, JobOutcome, Progress, run_job, start_job
from receiver.salesforce_connection import CONNECTED, list_connections
from receiver.salesforce_login import refresh_stored_token
from sf_metadata.errors import AgentProvisionError, JobBusy

__all__ = ["IDLE_LIMIT", "due_for_keep_alive", "keep_alive"]

log = logging.getLogger(LOGGER_NAME)

#: A connection unused this long is used once (Salesforce expires it after 30 idle days).
IDLE_LIMIT = timedelta(days=25)


def due_for_keep_alive(engine: Engine, now: datetime) -> list[str]:
    """The organizations whose ``oauth`` connection is connected and idle past the limit."""
    with transaction(engine, read_only=True) as session:
        connections = list_connections(session)
    return [
        c.organization
        for c in connections
        if c.kind == "oauth"
        and c.status == CONNECTED
        and (c.last_used_at or c.connected_at) <= now - IDLE_LIMIT
    ]


def keep_alive(
    engine: Engine,
    now: datetime,
    *,
    key: bytes,
    client_id: str | None,
    client_secret: str | None,
    http: requests.Session | None = None,
    clock: Callable[[], datetime] | None = None,
) -> list[str]:
    """Refresh every idle ``oauth`` connection once; return the organizations refreshed."""
    session_http = http or requests.Session()
    refreshed: list[str] = []
    for organization in due_for_keep_alive(engine, now):

        def work(progress: Progress, organization: str = organization) -> JobOutcome:
            progress.step("refreshing the token")
            refresh_stored_token(
                engine,
                key,
                organization,
                stale_access_token=None,
                client_id=client_id,
                client_secret=client_secret,
                http=session_http,
                clock=clock or progress.clock,
            )
            return JobOutcome(True, {"refreshed": True})

        try:
            progress = start_job(engine, organization, JobKind.KEEP_ALIVE, actor=SCHEDULER)
        except JobBusy:
            continue
        try:
            view = run_job(progress, work)
        except AgentProvisionError as error:
            log.warning("keep-alive of %s not recorded: %s", organization, error)
            continue
        if not view.problems:
            refreshed.append(organization)
        else:
            log.warning("keep-alive of %s failed: %s", organization, view.problems[0])
    return refreshed
