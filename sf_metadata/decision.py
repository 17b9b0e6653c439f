"""The pure provisioning decision: (user changes, stored state) -> one Decision each, and
each Decision carries its effect (what the store writes).

No I/O. The store loads a :class:`StoredState` snapshot (the users, usernames, parked
changes and notification ids one batch needs: one query per table), calls
:func:`plan_message` (an Outbound Message) or :func:`decide_changes` (user changes from any
source: a notification, a User that reconcile queried, a replayed notification), and
writes the effects through ``receiver.provisioning.apply_decisions`` in the same
transaction. :func:`decide_parked` decides again changes that were parked on a username
collision once the username is released.

- reading a change: ``sf_metadata.changes`` (:func:`user_change`, :func:`read_user_changes`);
- the types: ``sf_metadata.decision_types``; the effects: ``sf_metadata.effects``;
- the rules: ``sf_metadata.decide`` (shared by every source) and :func:`plan_message`
  (the envelope rules of one message: feature switch, object type, duplicates).

Rules: the project's CONTRACT section 2 (lifecycle, order, duplicates, collisions, parking).
"""

from __future__ import annotations

from collections.abc import Sequence

from sf_metadata.changes import UserChange, parse_stamp, read_user_changes, user_change
from sf_metadata.decide import decide_changes, decide_parked
from sf_metadata.decision_types import Action, Decision, PendingChange, StoredState, StoredUser
from sf_metadata.ids import USER, try_canonical_id
from sf_metadata.metadata_names import SOBJECT_TYPE
from sf_metadata.outbound import Notification

__all__ = [
    "Action",
    "Decision",
    "PendingChange",
    "StoredState",
    "StoredUser",
    "UserChange",
    "decide_changes",
    "decide_parked",
    "parse_stamp",
    "plan_message",
    "read_user_changes",
    "user_change",
]


def plan_message(
    notifications: Sequence[Notification],
    state: StoredState,
    *,
    feature_enabled: bool,
    changes: Sequence[UserChange | None] | None = None,
) -> list[Decision]:
    """Decide every notification of one message; one :class:`Decision` each, in document
    order.

    ``changes`` is :func:`read_user_changes` of ``notifications`` when the caller already
    computed it (same length and order; ``ValueError`` otherwise); ``None`` computes it.

    Rules, first match wins:

    - feature disabled: IGNORED, not marked processed (a later enable can take a retry);
    - ``sobject_type`` is not ``User``: IGNORED, marked processed;
    - ``Notification/Id`` missing or not an id: FAILED, not marked (nothing to mark);
    - id in ``state.processed_ids`` or earlier in this message: DUPLICATE;
    - no/invalid ``sf:Id``, no/bad ``IsActive``, bad stamp, bad related id: FAILED
      (permanent, marked processed);
    - the readable User changes are decided by :func:`decide_changes`.

    Pure; raises nothing for bad notification content (it becomes FAILED).
    """
    if changes is None:
        changes = read_user_changes(notifications)
    elif len(changes) != len(notifications):
        raise ValueError(f"{len(changes)} changes for {len(notifications)} notifications")
    decisions: list[Decision | None] = [None] * len(notifications)
    pending: list[PendingChange] = []
    seen: set[str] = set()
    for index, n in enumerate(notifications):
        screened = _screen(index, n, changes[index], state, seen, feature_enabled)
        if isinstance(screened, PendingChange):
            pending.append(screened)
        else:
            decisions[index] = screened
    for d in decide_changes(pending, state):
        decisions[d.index] = d
    return [d for d in decisions if d is not None]


def _screen(
    index: int,
    n: Notification,
    change: UserChange | None,
    state: StoredState,
    seen: set[str],
    feature_enabled: bool,
) -> Decision | PendingChange:
    """The envelope rules of :func:`plan_message` for one notification: a final
    :class:`Decision`, or the readable change to decide. Adds fresh ids to ``seen``."""
    nid = try_canonical_id(n.notification_id)
    crm = try_canonical_id(n.record_id, USER)
    action, reason, mark = Action.FAILED, "", True
    if not feature_enabled:
        action, reason, mark = Action.IGNORED, "feature disabled", False
    elif n.sobject_type != SOBJECT_TYPE:
        fresh = nid is not None and nid not in seen and nid not in state.processed_ids
        if nid is not None:
            seen.add(nid)
        reason = f"{n.sobject_type or 'untyped'} notifications are not provisioned, only User"
        action, mark = Action.IGNORED, fresh
    elif nid is None:
        reason = (
            "the notification has no Id"
            if n.notification_id is None
            else f"notification Id {n.notification_id[:40]!r} is not a Salesforce id"
        )
        mark = False
    elif nid in state.processed_ids:
        action, reason, mark = Action.DUPLICATE, f"notification {nid} was already processed", False
    elif nid in seen:
        action, mark = Action.DUPLICATE, False
        reason = f"notification {nid} is repeated in this message"
    else:
        seen.add(nid)
        if n.record_id is None or not n.record_id.strip():
            reason = "the User notification has no sf:Id"
        elif change is None or change.agent is None:
            error = change.error if change is not None else None
            reason = error or "the User notification could not be read"
        else:
            return PendingChange(
                index=index,
                notification_id=nid,
                agent=change.agent,
                stamp=change.stamp,
                active=change.active,
            )
    return Decision(
        index=index,
        notification_id=nid,
        crm_id=crm,
        action=action,
        reason=reason,
        mark_processed=mark,
    )
