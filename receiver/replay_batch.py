"""Replay of failed notifications as a job: every failure of a view of the provisioning
log at once (the log page's ``Replay failed`` button and ``agent-provision replay``, one
function behind both), and the row button's single replay.

After a fix (a mapping, a released username, a call center created), an admin replays the
failures of a filter at once instead of row by row; the count is shown before anything
runs (the convoy and Hookdeck "affects N" pattern, ``dashboard-anchors.md`` (b) 10).

Which failures are pending: those of ``organization`` whose notification was kept for
replay (``failed_notification``), in the filter (Salesforce user, received from/until,
message outcome, source), that are

- **not replayed yet**: no provisioning log entry with source ``replay`` names the event
  (a replay while the feature was off, logged as ignored, does not count);
- **the newest of its chain**: a failure replayed twice (its row's ``Replay`` pressed
  again) leaves two failures of one notification; only the newer is pending;
- **not overtaken**: no later entry of the same Salesforce user created, updated,
  restored or deprovisioned its agent (a parked change that woke up, a newer message, a
  reconcile): replaying those could only come out ``stale`` or change nothing.

They come in two groups (:class:`PendingFailures`): ``first``, failures of a delivery or
a reconcile, and ``again``, failures of an earlier replay (a replay that failed again,
which only a further fix can change). A batch takes ``first`` and, when the scope says
``again``, those too; so pressing twice with nothing fixed does not replay the same
notifications over and over.

A batch runs oldest first, at most :data:`MAX_BATCH` per call, each replay in its own
transaction through :func:`receiver.replay.replay_notification`: a store outage stops it
(the error propagates, what was replayed stays replayed), a replay that fails again is
counted and the batch goes on. Batches and single replays are ``replay`` jobs
(``receiver.jobs``): one at a time per organization across threads, workers and hosts,
so two presses at once never replay a failure twice (the second gets
:class:`~sf_metadata.errors.JobBusy`). A batch needs the organization's feature on
(replaying while it is off would log each failure as ``ignored`` and use it up):
:class:`~sf_metadata.errors.ReplayRefused` otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from receiver.db import transaction
from receiver.jobs import JobKind, JobOutcome, Progress, run_job, start_job
from receiver.models import ProvisioningEvent, ProvisioningMessage
from receiver.organizations import get_organization
from receiver.outcomes import MessageOutcome
from receiver.provisioning import SourceKind
from receiver.provisioning_log import message_conditions
from receiver.provisioning_tables import FailedNotification
from receiver.replay import ReplayResult, replay_notification
from receiver.sessions import SessionHooks
from sf_metadata.errors import ReplayNotFound, ReplayRefused

__all__ = [
    "MAX_BATCH",
    "BatchReplay",
    "PendingFailures",
    "ReplayScope",
    "pending_failures",
    "replay_failed",
    "replay_one",
]

#: At most this many failures are replayed per call (press again for the rest).
MAX_BATCH = 500

#: Actions that bring a user's agent in step: a failure before one of them is overtaken.
_APPLIED = ("created", "updated", "restored", "deprovisioned")

_F = FailedNotification.__table__  # type: ignore[attr-defined]
_E = ProvisioningEvent.__table__  # type: ignore[attr-defined]
_M = ProvisioningMessage.__table__  # type: ignore[attr-defined]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReplayScope:
    """Which failures: ``crm_id`` (an 18-character User id) or any; the message received
    at ``since`` or later and before ``until`` (aware UTC datetimes) or any time;
    ``outcome`` (a message outcome) or any; ``source`` (a :class:`SourceKind` value: the
    failures of Outbound Messages, of reconcile runs, or of earlier replays) or any;
    ``again``: also the failures of earlier replays."""

    crm_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    source: str | None = None
    again: bool = False


@dataclass(frozen=True, slots=True)
class PendingFailures:
    """The event ids of the pending failures, oldest first: ``first`` (failed on delivery
    or reconcile) and ``again`` (failed again on an earlier replay)."""

    first: list[int] = field(default_factory=list)
    again: list[int] = field(default_factory=list)

    def batch(self, *, again: bool) -> list[int]:
        """What a batch takes, oldest first."""
        return sorted(self.first + self.again) if again else list(self.first)


@dataclass(frozen=True, slots=True)
class BatchReplay:
    """What :func:`replay_failed` did: ``actions`` counts the new decisions by action
    (``{"created": 3, "failed": 1}``), ``remaining`` how many pending failures of the
    scope the batch did not reach (over :data:`MAX_BATCH`)."""

    actions: dict[str, int] = field(default_factory=dict)
    remaining: int = 0

    @property
    def replayed(self) -> int:
        """How many failures were replayed."""
        return sum(self.actions.values())


def pending_failures(
    session: Session, *, organization_id: str, scope: ReplayScope
) -> PendingFailures:
    """The scope's pending failures (see the module docstring; ``scope.again`` aside)."""
    later = _E.alias("later")
    later_message = _M.alias("later_message")
    overtaken = (
        sa.select(sa.literal(1))
        .select_from(later.join(later_message, later_message.c.id == later.c.message_id))
        .where(
            later.c.crm_id == _E.c.crm_id,
            later.c.message_id > _E.c.message_id,
            later.c.action.in_(_APPLIED),
            later_message.c.organization_id == organization_id,
        )
        .exists()
    )
    stmt = (
        sa.select(_F.c.event_id, _E.c.message_id, _M.c.source)
        .select_from(_F.join(_E, _E.c.id == _F.c.event_id).join(_M, _M.c.id == _E.c.message_id))
        .where(_F.c.organization_id == organization_id, _E.c.action == "failed", ~overtaken)
    )
    if scope.crm_id is not None:
        stmt = stmt.where(_E.c.crm_id == scope.crm_id)
    found = session.execute(stmt.where(*message_conditions(scope)).order_by(_F.c.event_id)).all()
    if not found:
        return PendingFailures()
    # Replays come after what they replay: only entries newer than the oldest candidate.
    oldest_message = min(int(r.message_id) for r in found)
    replayed: set[str] = set()
    parent: dict[int, int] = {}  # a replay's log event -> the event it replayed
    for ref, event in session.execute(
        sa.select(_M.c.source_ref, _E.c.id)
        .select_from(_M.outerjoin(_E, _E.c.message_id == _M.c.id))
        .where(
            _M.c.organization_id == organization_id,
            _M.c.id > oldest_message,
            _M.c.source == SourceKind.REPLAY.value,
            # a replay while the feature was off was only logged as ignored: the failure
            # stays pending (newcomer finding: it dropped out of every count)
            _M.c.outcome != MessageOutcome.IGNORED.value,
        )
    ):
        if ref is None:
            continue
        replayed.add(ref)
        if event is not None and ref.isdigit():
            parent[int(event)] = int(ref)
    # A failure replayed twice (its row's Replay pressed again) left two failures of one
    # notification: only the newest of each chain of replays is pending.
    newest: dict[int, Any] = {}
    for r in found:
        if str(r.event_id) in replayed:
            continue
        root, seen = int(r.event_id), set()
        while root in parent and root not in seen:
            seen.add(root)
            root = parent[root]
        if root not in newest or r.event_id > newest[root].event_id:
            newest[root] = r
    left = sorted(newest.values(), key=lambda r: int(r.event_id))
    return PendingFailures(
        first=[int(r.event_id) for r in left if r.source != SourceKind.REPLAY.value],
        again=[int(r.event_id) for r in left if r.source == SourceKind.REPLAY.value],
    )


def _as_job(
    engine: Engine,
    organization: str,
    work: Callable[[], T],
    *,
    require_enabled: bool,
    actor: str | None,
) -> T:
    """Run ``work`` as the organization's ``replay`` job started by ``actor`` (after
    checking the feature is on, with ``require_enabled``); re-raise what it raised once
    the lease is released."""
    with transaction(engine, read_only=True) as session:
        enabled = get_organization(session, organization).enabled
        if require_enabled and not enabled:
            raise ReplayRefused(
                f"Agent Auto Provision is off for {organization}: a replay now would only log "
                "each failure as ignored; turn it on first"
            )
    progress = start_job(engine, organization, JobKind.REPLAY, actor=actor)
    failure: list[BaseException] = []
    done: list[T] = []

    def job(_progress: Progress) -> JobOutcome:
        try:
            done.append(work())
        except Exception as error:  # re-raised below
            failure.append(error)
            return JobOutcome(False, problems=(str(error),))
        value = done[0]
        if isinstance(value, BatchReplay):
            return JobOutcome(True, {"actions": value.actions, "remaining": value.remaining})
        return JobOutcome(True)

    run_job(progress, job)
    if failure:
        raise failure[0]
    return done[0]


def replay_one(
    engine: Engine,
    *,
    organization: str,
    event_id: int,
    now: datetime,
    hooks: SessionHooks | None = None,
    actor: str | None = None,
) -> ReplayResult:
    """:func:`receiver.replay.replay_notification` of one failure, in its own transaction,
    as a ``replay`` job (so it never runs beside a batch). With the feature off it runs
    too (the row shows its ``ignored`` result, and its button stays). Raises
    :class:`~sf_metadata.errors.JobBusy`, :class:`~sf_metadata.errors.ReplayNotFound`,
    :class:`~sf_metadata.errors.OrganizationNotFound` and
    :class:`~sf_metadata.errors.StoreUnavailable`."""

    def work() -> ReplayResult:
        with transaction(engine) as session:
            return replay_notification(
                session, organization=organization, event_id=event_id, now=now, hooks=hooks
            )

    return _as_job(engine, organization, work, require_enabled=False, actor=actor)


def replay_failed(
    engine: Engine,
    *,
    organization: str,
    scope: ReplayScope,
    now: datetime,
    hooks: SessionHooks | None = None,
    limit: int = MAX_BATCH,
    actor: str | None = None,
) -> BatchReplay:
    """Replay the scope's pending failures (see the module docstring), oldest first, at
    most ``limit`` (capped at :data:`MAX_BATCH`), each in its own transaction, as the
    organization's ``replay`` job started by ``actor`` (its result holds the counts). ``now``: aware UTC
    datetime of the new log entries.

    Raises :class:`~sf_metadata.errors.JobBusy` while another replay of the organization
    runs, :class:`~sf_metadata.errors.ReplayRefused` while its feature is off,
    :class:`~sf_metadata.errors.OrganizationNotFound` and
    :class:`~sf_metadata.errors.StoreUnavailable` (the replays before it stay applied)."""
    limit = max(0, min(limit, MAX_BATCH))

    def work() -> BatchReplay:
        with transaction(engine, read_only=True) as session:
            pending = pending_failures(session, organization_id=organization, scope=scope)
        batch = pending.batch(again=scope.again)
        actions: Counter[str] = Counter()
        for event_id in batch[:limit]:
            try:
                with transaction(engine) as session:
                    result = replay_notification(
                        session, organization=organization, event_id=event_id, now=now, hooks=hooks
                    )
            except ReplayNotFound:  # pruned by the log retention since it was read
                continue
            actions[result.decision.action.value] += 1
        return BatchReplay(dict(actions), max(0, len(batch) - limit))

    return _as_job(engine, organization, work, require_enabled=True, actor=actor)
