"""Replay of a failed notification (the Provisioning log's ``Replay`` button): decide it
again, through the same decision code and the same apply path as the webhook.

The webhook keeps what a replay needs of every notification it records as failed
(``receiver.provisioning_tables.FailedNotification``: the notification's id, object type,
record id and fields; never a SessionId). :func:`replay_notification` rebuilds that
notification, decides it with :func:`~sf_metadata.decision.plan_message` against the
state stored now (so a change that is older than the stored one stays stale, a fixed
mapping or a released username lets it apply, and one that cannot be decided fails
again, with its reason), and writes the result with
:func:`~receiver.provisioning.apply_decisions` under a ``replay`` source: one new
provisioning log entry (``source`` ``replay``, ``source_ref`` the replayed event id).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import Session

from receiver.outcomes import MessageOutcome
from receiver.provisioning import (
    ApplySource,
    SourceKind,
    apply_decisions,
    load_stored_state,
    lock_organization,
    message_keys,
)
from receiver.provisioning_tables import FailedNotification
from receiver.sessions import EndedSession, SessionHooks
from sf_metadata.decision import Decision, plan_message, read_user_changes
from sf_metadata.errors import ReplayNotFound
from sf_metadata.outbound import Notification

__all__ = ["ReplayResult", "replay_notification"]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did.

    - ``message_id``: the ``provisioning_message`` id of the replay's log entry.
    - ``decision``: the replayed notification's new decision (its ``action`` and
      ``reason`` are the log's).
    - ``redecided``: parked changes decided again because the replay released a username.
    - ``ended_sessions``: sessions the replay ended (the hooks hear them after commit).
    """

    message_id: int
    decision: Decision
    redecided: tuple[Decision, ...]
    ended_sessions: tuple[EndedSession, ...]


def replay_notification(
    session: Session,
    *,
    organization: str,
    event_id: int,
    now: datetime,
    hooks: SessionHooks | None = None,
) -> ReplayResult:
    """Decide the failed notification of provisioning log event ``event_id`` of
    ``organization`` again and apply the result in the caller's transaction (see the
    module docstring). ``now`` is an aware UTC datetime; with ``hooks``, they hear about
    ended sessions after the commit. The notification is not marked processed again (it
    was when it failed), and the duplicate check is skipped: replaying is deciding again.

    Raises :class:`~sf_metadata.errors.OrganizationNotFound`,
    :class:`~sf_metadata.errors.ReplayNotFound` (no failed notification kept for that
    event in this organization), and whatever the session raises
    (:class:`~sf_metadata.errors.StoreUnavailable` through ``receiver.db.transaction``).
    """
    org = lock_organization(session, organization)
    row = session.get(FailedNotification, event_id)
    if row is None or row.organization_id != org.id:
        raise ReplayNotFound(
            f"provisioning log event {event_id} of organization {org.id} is not a failed "
            "notification that can be replayed"
        )
    notification = Notification(
        notification_id=row.notification_id,
        sobject_type=row.sobject_type,
        record_id=row.record_id,
        fields=dict(row.fields),
    )
    notifications = (notification,)
    changes = read_user_changes(notifications)
    state = load_stored_state(
        session, organization_id=org.id, keys=message_keys(notifications, changes)
    )
    state = replace(state, processed_ids=frozenset())
    (decision,) = plan_message(notifications, state, feature_enabled=org.enabled, changes=changes)
    decision = replace(decision, mark_processed=False)
    outcome = MessageOutcome.PROCESSED if org.enabled else MessageOutcome.IGNORED
    source = ApplySource(
        kind=SourceKind.REPLAY,
        outcome=outcome,
        detail=f"replay of provisioning log event {event_id}",
        reference=str(event_id),
        item_count=1,
        notifications=notifications,
    )
    result = apply_decisions(
        session, organization=org, decisions=[decision], source=source, now=now, hooks=hooks
    )
    return ReplayResult(
        message_id=result.message_id,
        decision=result.decisions[0],
        redecided=result.redecided,
        ended_sessions=result.ended_sessions,
    )
