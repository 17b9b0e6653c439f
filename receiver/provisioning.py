"""The provisioning transaction: apply one Outbound Message to the agent store.

:func:`apply_message` runs inside the caller's transaction (``receiver.db.transaction``):

0. read every User notification once (mapping, stamp, ``IsActive``: the pure
   :func:`~sf_metadata.decision.read_user_changes`), before the first query;
1. lock the organization row (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite's write
   transaction already began ``BEGIN IMMEDIATE``), so two deliveries for one organization
   serialize: no lost update, no duplicate agent (``docs/architecture.md``);
2. load a :class:`~sf_metadata.decision.StoredState` with one query per table (agents by crm
   id or username key, tombstones, processed notification ids; ids canonicalised to 18
   characters with ``sf_metadata.ids``);
3. decide with the pure :func:`~sf_metadata.decision.plan_message` (CONTRACT section 2);
4. write the result with set-based statements (bulk insert / update / delete; usernames
   that change are cleared first, so handovers, swaps and chains of usernames within one
   message never trip the unique index on the way): agents
   created, updated or restored (a restore re-inserts the SAME agent id, kept in the
   tombstone); a deprovision deletes the agent, keeps a tombstone (crm id, agent id,
   SystemModstamp) and ends all the agent's sessions (reason ``"deprovisioned"``); an
   ignored inactive user gets a tombstone holding its stamp (never lowered), so a late,
   older "active" message stays stale; processed notification ids; the provisioning log
   (one ``provisioning_message``, one ``provisioning_event`` per notification).

Nothing is committed here. Session-ended hooks must run only after the commit: pass
``hooks`` (they fire from the session's ``after_commit``), or use :func:`apply_and_commit`.
If the store fails mid-way the whole transaction rolls back (``StoreUnavailable``) and a
retry of the same message applies it exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from receiver._provisioning_state import (
    AgentState,
    TombState,
    load_state,
    lock_organization,
    replay,
    write_changes,
)
from receiver.db import insert_rows, transaction
from receiver.models import Organization, ProcessedNotification
from receiver.outcomes import MessageOutcome
from receiver.provisioning_log import record_events, record_message
from receiver.sessions import (
    END_REASON_DEPROVISIONED,
    EndedSession,
    SessionHooks,
    end_agent_sessions,
)
from sf_metadata.decision import (
    Action,
    Decision,
    UserChange,
    plan_message,
    read_user_changes,
)
from sf_metadata.outbound import OutboundMessage

__all__ = [
    "MessageResult",
    "apply_and_commit",
    "apply_message",
    "prune_processed",
]

#: Decisions that change a user's stored state (the one applied decision per user).
_APPLIED = frozenset({Action.CREATED, Action.UPDATED, Action.RESTORED, Action.DEPROVISIONED})


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What one message did.

    - ``message_id``: the ``provisioning_message`` id of its log entry.
    - ``outcome``: :class:`~receiver.outcomes.MessageOutcome` ``PROCESSED``, ``IGNORED``
      (feature disabled) or ``EMPTY``.
    - ``counts``: number of notifications per :class:`~sf_metadata.decision.Action`.
    - ``decisions``: one per notification, in document order.
    - ``ended_sessions``: sessions ended by deprovisioning (for the hooks, after commit).
    """

    message_id: int
    outcome: MessageOutcome
    counts: Mapping[Action, int]
    decisions: tuple[Decision, ...]
    ended_sessions: tuple[EndedSession, ...] = field(default=())


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
    and whatever the session raises (``receiver.db.transaction`` maps transient failures to
    :class:`~sf_metadata.errors.StoreUnavailable`).
    """
    notifications = tuple(message.notifications)
    # Pure and the costliest part (e-mail syntax checks): once, before the lock query.
    if changes is None or len(changes) != len(notifications):
        changes = read_user_changes(notifications)
    org = lock_organization(session, organization)
    state, before_agents, before_tombs = load_state(session, org.id, notifications, changes)
    decisions = list(
        plan_message(notifications, state, feature_enabled=org.enabled, changes=changes)
    )

    agents: dict[str, AgentState | None] = dict(before_agents)
    tombs: dict[str, TombState | None] = dict(before_tombs)
    replay(decisions, notifications, agents, tombs, enabled=org.enabled, now=now)
    order = {d.crm_id: d.index for d in decisions if d.crm_id and d.action in _APPLIED}
    deleted_agent_ids = write_changes(
        session, org.id, before_agents, before_tombs, agents, tombs, now, order
    )
    ended = end_agent_sessions(
        session, agent_ids=deleted_agent_ids, now=now, reason=END_REASON_DEPROVISIONED
    )

    new_ids = sorted(
        {
            d.notification_id
            for d in decisions
            if d.mark_processed
            and d.notification_id is not None
            and d.notification_id not in state.processed_ids
        }
    )
    if new_ids:
        insert_rows(
            session,
            ProcessedNotification,
            [
                {"organization_id": org.id, "notification_id": nid, "processed_at": now}
                for nid in new_ids
            ],
        )

    if not notifications:
        outcome, detail = MessageOutcome.EMPTY, "the message holds no notifications"
    elif not org.enabled:
        outcome, detail = MessageOutcome.IGNORED, "the feature is disabled for this organization"
    else:
        outcome, detail = MessageOutcome.PROCESSED, None
    message_id = record_message(
        session,
        organization_id=org.id,
        received_at=now,
        outcome=outcome,
        action_id=message.action_id,
        notification_count=len(notifications),
        detail=detail,
    )
    record_events(session, message_id=message_id, decisions=decisions)
    if hooks is not None:
        hooks.fire_after_commit(session, ended)
    return MessageResult(
        message_id=message_id,
        outcome=outcome,
        counts=dict(Counter(d.action for d in decisions)),
        decisions=tuple(decisions),
        ended_sessions=tuple(ended),
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
