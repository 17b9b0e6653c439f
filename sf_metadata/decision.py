"""The pure provisioning decision: (notifications, stored state) -> one Decision each.

No I/O: the store loads a :class:`StoredState` snapshot for the users, usernames and
notification ids of one message (one query per table), calls :func:`plan_message`, and
writes the decisions back in the same transaction. The coming reconcile run builds the
same snapshot from SOQL results and calls the same function.

Rules: ``../shared/CONTRACT.md`` section 2 (lifecycle, order, duplicates, collisions).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sf_metadata.errors import NotificationError
from sf_metadata.ids import USER, try_canonical_id
from sf_metadata.mapping import AgentRecord, map_user, parse_boolean, username_key
from sf_metadata.metadata_names import SOBJECT_TYPE
from sf_metadata.outbound import Notification

__all__ = [
    "Action",
    "Decision",
    "StoredState",
    "StoredUser",
    "UserChange",
    "parse_stamp",
    "plan_message",
    "read_user_changes",
]


class Action(enum.StrEnum):
    """What one notification did. The values are the provisioning log's words."""

    CREATED = "created"
    UPDATED = "updated"
    DEPROVISIONED = "deprovisioned"
    RESTORED = "restored"
    DUPLICATE = "duplicate"
    STALE = "stale"
    IGNORED = "ignored"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StoredUser:
    """What the store holds for one Salesforce user of one organization.

    ``provisioned`` is False for a tombstone. ``agent_id`` is our internal agent id
    (``None`` for a tombstone of a user that was never provisioned). ``system_modstamp``
    is the stamp of the last applied change (UTC, aware), ``None`` if none was known.
    """

    crm_id: str
    agent_id: str | None
    provisioned: bool
    system_modstamp: datetime | None
    username: str | None


@dataclass(frozen=True, slots=True)
class StoredState:
    """Snapshot of the store for one message.

    - ``users``: by 18-character crm id, for every user id in the message.
    - ``username_owners``: casefolded username -> 18-character crm id of the provisioned
      agent holding it, for every username the message's notifications would map to.
    - ``processed_ids``: 18-character notification ids already applied in this org.
    """

    users: Mapping[str, StoredUser]
    username_owners: Mapping[str, str]
    processed_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision for one notification, in document order.

    - ``index``: position of the notification in the message (0-based).
    - ``notification_id``: canonical 18-character id, or ``None`` if it had none / invalid.
    - ``crm_id``: canonical 18-character User id, or ``None`` if it could not be read.
    - ``action`` and ``reason`` (one human sentence, never a secret).
    - ``stamp``: the ordering stamp used (SystemModstamp, else LastModifiedDate), or None.
    - ``agent``: the mapped agent for created/updated/restored, else ``None``.
    - ``mark_processed``: whether ``notification_id`` is to be remembered as applied.
    """

    index: int
    notification_id: str | None
    crm_id: str | None
    action: Action
    reason: str
    stamp: datetime | None
    agent: AgentRecord | None
    mark_processed: bool


def _utc(value: datetime) -> datetime:
    """Aware UTC; a naive value (as SQLite returns it) is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_stamp(fields: Mapping[str, str | None]) -> datetime | None:
    """The ordering stamp of a User notification: ``SystemModstamp``, else
    ``LastModifiedDate`` (``xsd:dateTime`` such as ``2026-11-20T10:00:00.000Z``; Salesforce
    always sends UTC, ``outbound-wire-format.md`` 1.3), as an aware UTC datetime; ``None``
    when both are absent/empty (then arrival order decides).

    Raises :class:`NotificationError` naming the field when the chosen field is not a
    dateTime, or is one that has no UTC equivalent in years 1..9999.
    """
    for name in ("SystemModstamp", "LastModifiedDate"):
        text = fields.get(name)
        if text:
            try:
                return _utc(datetime.fromisoformat(text.strip()))
            except (ValueError, OverflowError):
                # OverflowError: an offset pushes an edge value such as
                # 9999-12-31T23:59:59-05:00 out of datetime's range when converted to UTC.
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise NotificationError(f"{name} is {shown!r}, not an xsd:dateTime") from None
    return None


@dataclass(frozen=True, slots=True)
class UserChange:
    """The content of one User notification, read once (mapping, stamp, ``IsActive``).

    Either ``error`` is ``None`` and ``agent`` is the mapped record, ``stamp`` the
    ordering stamp (see :func:`parse_stamp`) and ``active`` the parsed ``IsActive``; or
    ``error`` is the reason it cannot be decided (then ``agent`` is ``None``).
    """

    agent: AgentRecord | None
    stamp: datetime | None
    active: bool
    error: str | None


def _read_user_change(n: Notification) -> UserChange | None:
    if n.sobject_type != SOBJECT_TYPE or n.record_id is None or not n.record_id.strip():
        return None
    try:
        agent = map_user(n.record_id, n.fields)
        stamp = parse_stamp(n.fields)
        active = parse_boolean("IsActive", n.fields.get("IsActive") or None)
    except NotificationError as exc:
        return UserChange(None, None, False, exc.message)
    return UserChange(agent, stamp, active, None)


def read_user_changes(notifications: Sequence[Notification]) -> tuple[UserChange | None, ...]:
    """One :class:`UserChange` per notification, in document order (``None`` for a
    notification that is not about a User or has no ``sf:Id``). Pure; the e-mail syntax
    check of the username runs here once per notification, so the store can compute this
    before it takes its write lock and pass it to both its state load and
    :func:`plan_message`. Raises nothing for bad content (it becomes ``error``)."""
    return tuple(_read_user_change(n) for n in notifications)


@dataclass(frozen=True, slots=True)
class _Candidate:
    index: int
    notification_id: str
    crm_id: str
    stamp: datetime | None
    agent: AgentRecord
    active: bool


def _rank(c: _Candidate) -> tuple[int, datetime, int]:
    # A missing stamp means arrival order: newer than any stamped change; then doc order.
    return (
        (1, datetime.min.replace(tzinfo=UTC), c.index)
        if c.stamp is None
        else (
            0,
            c.stamp,
            c.index,
        )
    )


def plan_message(
    notifications: Sequence[Notification],
    state: StoredState,
    *,
    feature_enabled: bool,
    changes: Sequence[UserChange | None] | None = None,
) -> list[Decision]:
    """Decide every notification of one message; one :class:`Decision` each, in document
    order (CONTRACT section 2: lifecycle, order, duplicates, collisions).

    ``changes`` is :func:`read_user_changes` of ``notifications`` when the caller already
    computed it (same length and order); ``None`` computes it here.

    Rules, first match wins:

    - feature disabled: IGNORED, not marked processed (a later enable can take a retry);
    - ``sobject_type`` is not ``User``: IGNORED, marked processed;
    - ``Notification/Id`` missing or not an id: FAILED, not marked (nothing to mark);
    - id in ``state.processed_ids`` or earlier in this message: DUPLICATE;
    - no/invalid ``sf:Id``, no/bad ``IsActive``, bad stamp, bad related id: FAILED
      (permanent, marked processed);
    - several notifications for one user: the newest stamp wins (ties: later in the
      document); the others are STALE;
    - stamp older than the stored ``system_modstamp``: STALE (equal applies);
    - ``IsActive`` true: CREATED / UPDATED / RESTORED (tombstone with an agent id);
      false: DEPROVISIONED if provisioned, else IGNORED (crm id and stamp kept so the
      store can keep or advance a tombstone);
    - the mapped username (casefolded) held by another user (stored owners, or claimed
      by an earlier change of this message and not released by an earlier
      deprovision/rename): FAILED, nothing merged. A ``None`` username never collides.
      "Earlier" is the order the changes are applied in: the winning notification of
      each user, by stamp (a missing stamp is newest: arrival order), equal stamps in
      document order. So a username released by an older change that comes later in the
      document is free for a newer claim (Salesforce usernames are unique at any instant).

    Pure; raises nothing for bad notification content (it becomes FAILED).
    """
    if changes is None:
        changes = read_user_changes(notifications)
    decisions: list[Decision | None] = [None] * len(notifications)
    candidates: list[_Candidate] = []
    seen: set[str] = set()

    for index, n in enumerate(notifications):
        notification_id = try_canonical_id(n.notification_id)
        crm_guess = try_canonical_id(n.record_id, USER)

        def done(
            action: Action,
            reason: str,
            mark: bool,
            i: int = index,
            nid: str | None = notification_id,
            crm: str | None = crm_guess,
        ) -> None:
            decisions[i] = Decision(i, nid, crm, action, reason, None, None, mark)

        if not feature_enabled:
            done(Action.IGNORED, "feature disabled", False)
            continue
        if n.sobject_type != SOBJECT_TYPE:
            done(
                Action.IGNORED,
                f"{n.sobject_type or 'untyped'} notifications are not provisioned, only User",
                notification_id is not None
                and notification_id not in seen
                and notification_id not in state.processed_ids,
            )
            if notification_id is not None:
                seen.add(notification_id)
            continue
        if notification_id is None:
            reason = (
                "the notification has no Id"
                if n.notification_id is None
                else f"notification Id {n.notification_id[:40]!r} is not a Salesforce id"
            )
            done(Action.FAILED, reason, False)
            continue
        if notification_id in state.processed_ids:
            done(Action.DUPLICATE, f"notification {notification_id} was already processed", False)
            continue
        if notification_id in seen:
            done(
                Action.DUPLICATE,
                f"notification {notification_id} is repeated in this message",
                False,
            )
            continue
        seen.add(notification_id)

        if n.record_id is None or not n.record_id.strip():
            done(Action.FAILED, "the User notification has no sf:Id", True)
            continue
        change = changes[index]
        if change is None or change.agent is None:
            done(
                Action.FAILED,
                change.error
                if change and change.error
                else "the User notification could not be read",
                True,
            )
            continue
        candidates.append(
            _Candidate(
                index,
                notification_id,
                change.agent.crm_id,
                change.stamp,
                change.agent,
                change.active,
            )
        )

    winners: dict[str, _Candidate] = {}
    for c in candidates:
        best = winners.get(c.crm_id)
        if best is None or _rank(c) > _rank(best):
            winners[c.crm_id] = c

    for c in candidates:
        if winners[c.crm_id] is not c:
            decisions[c.index] = Decision(
                c.index,
                c.notification_id,
                c.crm_id,
                Action.STALE,
                "superseded by a newer change in the same message",
                c.stamp,
                None,
                True,
            )
    # Usernames are released and claimed in the order the changes happened in Salesforce.
    owners = dict(state.username_owners)
    for c in sorted(winners.values(), key=_rank):
        decisions[c.index] = _decide(c, state.users.get(c.crm_id), owners)
    return [d for d in decisions if d is not None]


def _release(owners: dict[str, str], crm_id: str) -> None:
    for key in [k for k, v in owners.items() if v == crm_id]:
        del owners[key]


def _decide(c: _Candidate, stored: StoredUser | None, owners: dict[str, str]) -> Decision:
    def make(action: Action, reason: str, agent: AgentRecord | None = None) -> Decision:
        return Decision(c.index, c.notification_id, c.crm_id, action, reason, c.stamp, agent, True)

    if stored is not None and stored.system_modstamp is not None and c.stamp is not None:
        stored_stamp = _utc(stored.system_modstamp)
        if c.stamp < stored_stamp:
            return make(
                Action.STALE,
                f"older than the stored change (SystemModstamp {c.stamp.isoformat()} < "
                f"{stored_stamp.isoformat()})",
            )
    if not c.active:
        if stored is not None and stored.provisioned:
            _release(owners, c.crm_id)
            return make(Action.DEPROVISIONED, "IsActive is false")
        return make(Action.IGNORED, "user is not provisioned")

    username = c.agent.username
    key = username_key(username)
    if key is not None:
        owner = owners.get(key)
        if owner is not None and owner != c.crm_id:
            return make(
                Action.FAILED,
                f"username {username} is already used by Salesforce user {owner}",
            )
    _release(owners, c.crm_id)
    if key is not None:
        owners[key] = c.crm_id
    if stored is None:
        return make(Action.CREATED, "IsActive is true: new agent", c.agent)
    if stored.provisioned:
        return make(Action.UPDATED, "IsActive is true: agent updated", c.agent)
    if stored.agent_id is not None:
        return make(Action.RESTORED, "IsActive is true: deprovisioned agent restored", c.agent)
    return make(Action.CREATED, "IsActive is true: new agent (user was never provisioned)", c.agent)
