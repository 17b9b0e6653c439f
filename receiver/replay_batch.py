"""Replay of every failed notification in a view of the provisioning log (the log page's
``Replay failed`` button and ``agent-provision replay``): the same function behind both.

After a fix (a mapping, a released username, a call center created), an admin replays the
failures of a filter at once instead of row by row; the count is shown before anything
runs (the convoy and Hookdeck "affects N" pattern, ``dashboard-anchors.md`` (b) 10).

Which failures: those of ``organization`` whose notification was kept for replay
(``failed_notification``), in the filter (Salesforce user, received from/until, message
outcome), and **not replayed yet**: no provisioning log entry with source ``replay``
names the event. A failure that fails again on replay has a new entry (with its own kept
notification), so pressing the button twice replays each failure once, not twice.
They run oldest first (an older change never runs after a newer one of the same user),
at most :data:`MAX_BATCH` per call, each in its own transaction through
:func:`receiver.replay.replay_notification`: one store outage stops the batch (the
error propagates, what was replayed stays replayed), a replay that fails again is
counted and the batch goes on. A batch is a ``replay`` job (``receiver.jobs``): one at a
time per organization, so two presses at once never replay a failure twice (the second
gets :class:`~sf_metadata.errors.JobBusy`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from receiver.db import transaction
from receiver.jobs import JobKind, JobOutcome, Progress, run_job, start_job
from receiver.models import ProvisioningEvent, ProvisioningMessage
from receiver.provisioning import SourceKind
from receiver.provisioning_tables import FailedNotification
from receiver.replay import replay_notification
from receiver.sessions import SessionHooks
from sf_metadata.errors import ReplayNotFound

__all__ = ["MAX_BATCH", "BatchReplay", "ReplayScope", "replay_failed", "replayable_failures"]

#: At most this many failures are replayed per call (press again for the rest).
MAX_BATCH = 500

_F = FailedNotification.__table__  # type: ignore[attr-defined]
_E = ProvisioningEvent.__table__  # type: ignore[attr-defined]
_M = ProvisioningMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ReplayScope:
    """Which failures: ``crm_id`` (an 18-character User id) or any; the message received
    at ``since`` or later and before ``until`` (aware UTC datetimes) or any time;
    ``outcome`` (a message outcome) or any."""

    crm_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class BatchReplay:
    """What :func:`replay_failed` did: ``actions`` counts the new decisions by action
    (``{"created": 3, "failed": 1}``), ``remaining`` how many failures of the scope were
    left for another call (over :data:`MAX_BATCH`)."""

    actions: dict[str, int] = field(default_factory=dict)
    remaining: int = 0

    @property
    def replayed(self) -> int:
        """How many failures were replayed."""
        return sum(self.actions.values())


def replayable_failures(
    session: Session, *, organization_id: str, scope: ReplayScope, limit: int | None = None
) -> list[int]:
    """The provisioning log event ids of the scope's failures not replayed yet, oldest
    first, at most ``limit`` (``None``: all)."""
    stmt = (
        sa.select(_F.c.event_id, _E.c.message_id)
        .select_from(_F.join(_E, _E.c.id == _F.c.event_id).join(_M, _M.c.id == _E.c.message_id))
        .where(_F.c.organization_id == organization_id, _E.c.action == "failed")
    )
    if scope.crm_id is not None:
        stmt = stmt.where(_E.c.crm_id == scope.crm_id)
    if scope.since is not None:
        stmt = stmt.where(_M.c.received_at >= scope.since)
    if scope.until is not None:
        stmt = stmt.where(_M.c.received_at < scope.until)
    if scope.outcome is not None:
        stmt = stmt.where(_M.c.outcome == scope.outcome)
    found = session.execute(stmt.order_by(_F.c.event_id)).all()
    if not found:
        return []
    # Replays come after what they replay: only entries newer than the oldest candidate.
    oldest_message = min(int(r.message_id) for r in found)
    replayed = {
        ref
        for (ref,) in session.execute(
            sa.select(_M.c.source_ref).where(
                _M.c.organization_id == organization_id,
                _M.c.id > oldest_message,
                _M.c.source == SourceKind.REPLAY.value,
            )
        )
    }
    ids = [int(r.event_id) for r in found if str(r.event_id) not in replayed]
    return ids if limit is None else ids[:limit]


def replay_failed(
    engine: Engine,
    *,
    organization: str,
    scope: ReplayScope,
    now: datetime,
    hooks: SessionHooks | None = None,
    limit: int = MAX_BATCH,
) -> BatchReplay:
    """Replay the scope's failures not replayed yet (see the module docstring), oldest
    first, at most ``limit`` (capped at :data:`MAX_BATCH`), each in its own transaction.
    ``now``: aware UTC datetime of the new log entries. It runs as a ``replay`` job
    (``receiver.jobs``): one at a time per organization across threads, workers and hosts,
    so two presses at once cannot replay a failure twice; the job's result holds the
    counts.

    Raises :class:`~sf_metadata.errors.JobBusy` while another bulk replay of the
    organization runs, :class:`~sf_metadata.errors.OrganizationNotFound` and
    :class:`~sf_metadata.errors.StoreUnavailable` (the replays before it stay applied)."""
    limit = max(0, min(limit, MAX_BATCH))
    progress = start_job(engine, organization, JobKind.REPLAY)
    failure: list[BaseException] = []
    done: list[BatchReplay] = []

    def work(progress: Progress) -> JobOutcome:
        try:
            done.append(_replay_pending(engine, organization, scope, now, hooks, limit))
        except Exception as error:  # re-raised below, once the lease is released
            failure.append(error)
            return JobOutcome(False, problems=(str(error),))
        result = done[0]
        return JobOutcome(True, {"actions": result.actions, "remaining": result.remaining})

    run_job(progress, work)
    if failure:
        raise failure[0]
    return done[0]


def _replay_pending(
    engine: Engine,
    organization: str,
    scope: ReplayScope,
    now: datetime,
    hooks: SessionHooks | None,
    limit: int,
) -> BatchReplay:
    with transaction(engine, read_only=True) as session:
        pending = replayable_failures(session, organization_id=organization, scope=scope)
    actions: Counter[str] = Counter()
    for event_id in pending[:limit]:
        try:
            with transaction(engine) as session:
                result = replay_notification(
                    session, organization=organization, event_id=event_id, now=now, hooks=hooks
                )
        except ReplayNotFound:  # pruned by the log retention since it was read
            continue
        actions[result.decision.action.value] += 1
    return BatchReplay(dict(actions), max(0, len(pending) - limit))
