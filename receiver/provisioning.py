"""The provisioning transaction: apply decisions to the agent store, the one write path of
the webhook, reconcile and replay.

:func:`apply_decisions` writes what the decisions say (``sf_metadata.decision``: each
:class:`~sf_metadata.decision.Decision` carries its effect) inside the caller's
transaction (``receiver.db.transaction``), after the caller locked the organization
(:func:`lock_organization`) and decided against :func:`load_stored_state`:

1. agents created, updated or restored (a restore re-inserts the SAME agent id, kept in
   the tombstone), agents deleted on deprovision, tombstones written (crm id, agent id,
   SystemModstamp), all with set-based statements (usernames that change are cleared
   first, so handovers, swaps and chains within one batch never trip the unique index);
2. every session of a deprovisioned agent, or of one that became disabled, ends (reasons
   ``"deprovisioned"`` and ``"disabled"``);
3. processed notification ids; the provisioning log (one ``provisioning_message`` naming
   the source, one ``provisioning_event`` per decision).

:func:`apply_message` is the webhook's: read the notifications once
(:func:`~sf_metadata.decision.read_user_changes`, before the first query), lock (SQLite:
the write transaction already began ``BEGIN IMMEDIATE``, so deliveries serialize;
PostgreSQL: the organization row ``FOR SHARE`` and advisory locks on the message's users,
usernames and notification ids, so only deliveries sharing one of them serialize:
``receiver.message_locks``), load the state (one query per table),
:func:`~sf_metadata.decision.plan_message`, then :func:`apply_decisions`.

Nothing is committed here. Session-ended hooks run only after the commit: pass ``hooks``
(they fire once the transaction commits), or use :func:`apply_and_commit`. If the store
fails mid-way the whole transaction rolls back (``StoreUnavailable``) and a retry of the
same message applies it exactly once.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from receiver._parking import released_keys, store_failed, wake_parked, write_contained_and_parking
from receiver._provisioning_state import StateKeys, load_state, lock_organization, message_keys
from receiver.db import insert_rows, transaction
from receiver.message_locks import run_message_locked
from receiver.models import Organization, ProcessedNotification
from receiver.outcomes import MessageOutcome
from receiver.provisioning_log import record_events, record_message
from receiver.sessions import EndedSession, SessionHooks, end_agent_sessions
from sf_metadata.decision import (
    Action,
    Decision,
    StoredState,
    UserChange,
    plan_message,
    read_user_changes,
)
from sf_metadata.effects import EndReason
from sf_metadata.outbound import Notification, OutboundMessage

__all__ = [
    "ApplyResult",
    "ApplySource",
    "MessageResult",
    "SourceKind",
    "StateKeys",
    "apply_and_commit",
    "apply_decisions",
    "apply_message",
    "load_stored_state",
    "lock_organization",
    "message_keys",
    "prune_processed",
]


class SourceKind(enum.StrEnum):
    """Where decisions came from (``provisioning_message.source``)."""

    OUTBOUND_MESSAGE = "outbound-message"
    RECONCILE = "reconcile"
    REPLAY = "replay"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplySource:
    """The source of a batch of decisions, for the provisioning log and the timeline.

    - ``kind``: see :class:`SourceKind`; ``outcome``: the log's one word
      (``processed``, ``ignored``, ``empty``); ``detail``: one sentence or ``None``.
    - ``action_id``: the Outbound Message's ActionId; ``reference``: the reconcile run
      (plan id) or the replayed event id; ``item_count``: notifications or Users read.
    - ``notifications``: the message's notifications (kept for the replay of failed ones;
      never a SessionId).
    """

    kind: SourceKind
    outcome: MessageOutcome = MessageOutcome.PROCESSED
    detail: str | None = None
    action_id: str | None = None
    reference: str | None = None
    item_count: int = 0
    notifications: tuple[Notification, ...] = ()

    @classmethod
    def outbound_message(
        cls, message: OutboundMessage, *, outcome: MessageOutcome, detail: str | None
    ) -> ApplySource:
        """The source for one Outbound Message (its SessionId is not kept)."""
        return cls(
            kind=SourceKind.OUTBOUND_MESSAGE,
            outcome=outcome,
            detail=detail,
            action_id=message.action_id,
            item_count=len(message.notifications),
            notifications=tuple(message.notifications),
        )

    @classmethod
    def reconcile(
        cls, *, reference: str, item_count: int, detail: str | None = None
    ) -> ApplySource:
        """The source for an applied reconcile plan ``reference`` of ``item_count`` Users."""
        return cls(
            kind=SourceKind.RECONCILE,
            reference=reference,
            item_count=item_count,
            detail=detail,
        )


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What :func:`apply_decisions` wrote.

    - ``message_id``: the ``provisioning_message`` id of the log entry.
    - ``decisions``: as given; ``redecided``: parked changes decided again in the same
      transaction because their username was released (logged after ``decisions``).
    - ``ended_sessions``: sessions ended (for the hooks, after commit).
    """

    message_id: int
    decisions: tuple[Decision, ...]
    redecided: tuple[Decision, ...] = ()
    ended_sessions: tuple[EndedSession, ...] = ()

    @property
    def counts(self) -> dict[Action, int]:
        """Decisions per action (``decisions`` only)."""
        return dict(Counter(d.action for d in self.decisions))


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What one message did.

    - ``message_id``: the ``provisioning_message`` id of its log entry.
    - ``outcome``: :class:`~receiver.outcomes.MessageOutcome` ``PROCESSED``, ``IGNORED``
      (feature disabled) or ``EMPTY``.
    - ``counts``: number of notifications per :class:`~sf_metadata.decision.Action`.
    - ``decisions``: one per notification, in document order.
    - ``ended_sessions``: sessions ended by deprovisioning or disabling (for the hooks).
    - ``redecided``: parked changes decided again (see :class:`ApplyResult`).
    """

    message_id: int
    outcome: MessageOutcome
    counts: Mapping[Action, int]
    decisions: tuple[Decision, ...]
    ended_sessions: tuple[EndedSession, ...] = field(default=())
    redecided: tuple[Decision, ...] = field(default=())


def load_stored_state(session: Session, *, organization_id: str, keys: StateKeys) -> StoredState:
    """The stored state to decide against: agents and tombstones of ``keys.crm_ids``, the
    holders of ``keys.username_keys``, the processed ids among ``keys.notification_ids``
    (one query per table). Call it after :func:`lock_organization`, in the same
    transaction as :func:`apply_decisions`."""
    return load_state(session, organization_id, keys)


def apply_decisions(
    session: Session,
    *,
    organization: Organization,
    decisions: Sequence[Decision],
    source: ApplySource,
    now: datetime,
    hooks: SessionHooks | None = None,
) -> ApplyResult:
    """Write ``decisions`` (decided against the state loaded in this transaction, after
    :func:`lock_organization` returned ``organization``) and log them under ``source``;
    see the module docstring. ``now`` is an aware UTC datetime. With ``hooks``, they hear
    about the ended sessions after the commit.

    Parked changes (username collisions) are written too, and every parked change whose
    username the decisions release (a rename, a deprovision) is decided again here, with
    :func:`~sf_metadata.decision.decide_parked` against the state as written, round after
    round while releases wake more (a chain); those decisions are ``redecided``, logged
    after ``decisions``. FAILED decisions about ``source.notifications`` are kept for
    :func:`receiver.replay.replay_notification`.

    Raises whatever the session raises (``receiver.db.transaction`` maps transient
    failures to :class:`~sf_metadata.errors.StoreUnavailable`).
    """
    org_id = organization.id
    decisions = tuple(decisions)
    decisions = write_contained_and_parking(session, org_id, decisions, now)
    redecided = wake_parked(
        session, org_id, released_keys(decisions), now, first_index=len(decisions)
    )
    applied = decisions + redecided
    ended = _end_sessions(session, applied, now)
    new_ids = sorted(
        {d.notification_id for d in decisions if d.mark_processed and d.notification_id}
    )
    if new_ids:
        insert_rows(
            session,
            ProcessedNotification,
            [
                {"organization_id": org_id, "notification_id": nid, "processed_at": now}
                for nid in new_ids
            ],
        )
    message_id = record_message(
        session,
        organization_id=org_id,
        received_at=now,
        outcome=source.outcome,
        action_id=source.action_id,
        notification_count=source.item_count,
        detail=source.detail,
        source=source.kind.value,
        source_ref=source.reference,
    )
    record_events(session, message_id=message_id, decisions=applied)
    store_failed(session, org_id, message_id, decisions, source.notifications, now)
    if hooks is not None:
        hooks.fire_after_commit(session, ended)
    return ApplyResult(
        message_id=message_id,
        decisions=decisions,
        redecided=redecided,
        ended_sessions=tuple(ended),
    )


def _end_sessions(
    session: Session, decisions: Sequence[Decision], now: datetime
) -> list[EndedSession]:
    """End the sessions the decisions name: one statement pair per reason."""
    ended: list[EndedSession] = []
    for reason in (EndReason.DEPROVISIONED, EndReason.DISABLED):
        agent_ids = [
            d.end_sessions.agent_id
            for d in decisions
            if d.end_sessions is not None and d.end_sessions.reason is reason
        ]
        if agent_ids:
            ended += end_agent_sessions(session, agent_ids=agent_ids, now=now, reason=reason.value)
    return ended


def apply_message(
    session: Session,
    *,
    organization: Organization | str,
    message: OutboundMessage,
    now: datetime,
    hooks: SessionHooks | None = None,
    changes: tuple[UserChange | None, ...] | None = None,
) -> MessageResult:
    """Apply ``message`` (already checked to belong to ``organization``) in the caller's
    transaction; see the module docstring. ``now`` is an aware UTC datetime. ``changes``
    is ``read_user_changes(message.notifications)`` when the caller computed it before
    opening the transaction (so the e-mail checks run outside the store's write lock);
    ``None`` computes it here.

    Raises :class:`~sf_metadata.errors.OrganizationNotFound` if the organization is gone,
    ``ValueError`` if ``changes`` does not match the notifications, and whatever the
    session raises (``receiver.db.transaction`` maps transient failures to
    :class:`~sf_metadata.errors.StoreUnavailable`).
    """
    notifications = tuple(message.notifications)
    # Pure and the costliest part (e-mail syntax checks): once, before the lock query.
    if changes is None:
        changes = read_user_changes(notifications)
    elif len(changes) != len(notifications):
        raise ValueError(f"{len(changes)} changes for {len(notifications)} notifications")

    # PostgreSQL: organization FOR SHARE + advisory locks of this message's users,
    # usernames and notification ids, in a savepoint the message may start again from
    # (receiver.message_locks); SQLite: as lock_organization.
    def decide_and_write(org: Organization, state: StoredState) -> MessageResult:
        decisions = plan_message(notifications, state, feature_enabled=org.enabled, changes=changes)
        if not notifications:
            outcome, detail = MessageOutcome.EMPTY, "the message holds no notifications"
        elif not org.enabled:
            outcome = MessageOutcome.IGNORED
            detail = "the feature is disabled for this organization"
        else:
            outcome, detail = MessageOutcome.PROCESSED, None
        result = apply_decisions(
            session,
            organization=org,
            decisions=decisions,
            source=ApplySource.outbound_message(message, outcome=outcome, detail=detail),
            now=now,
            hooks=hooks,
        )
        return MessageResult(
            message_id=result.message_id,
            outcome=outcome,
            counts=result.counts,
            decisions=result.decisions,
            ended_sessions=result.ended_sessions,
            redecided=result.redecided,
        )

    return run_message_locked(
        session, organization, message_keys(notifications, changes), decide_and_write
    )


def apply_and_commit(
    engine: Engine,
    *,
    organization: Organization | str,
    message: OutboundMessage,
    now: datetime,
    hooks: SessionHooks | None = None,
) -> MessageResult:
    """:func:`apply_message` in its own transaction, committed; then the hooks hear about
    the ended sessions. Raises :class:`~sf_metadata.errors.StoreUnavailable` (nothing
    applied) and :class:`~sf_metadata.errors.OrganizationNotFound`."""
    with transaction(engine) as session:
        result = apply_message(session, organization=organization, message=message, now=now)
    if hooks is not None:
        hooks.fire(result.ended_sessions)
    return result


def prune_processed(session: Session, *, older_than: datetime) -> int:
    """Forget processed notification ids recorded before ``older_than`` (retention: at least
    48 hours, default 7 days, ``Settings.processed_retention_hours``); returns how many."""
    result = session.exec(
        delete(ProcessedNotification).where(col(ProcessedNotification.processed_at) < older_than)
    )
    return int(result.rowcount or 0)
