"""What one applied user change decides and writes (pure, no I/O), for
``sf_metadata.decide``: the :class:`~sf_metadata.decision_types.Decision` of an active
change (CREATED / UPDATED / RESTORED with its :class:`~sf_metadata.effects.UpsertAgent`,
:func:`upsert`) or of an inactive one (DEPROVISIONED or IGNORED with its
:class:`~sf_metadata.effects.WriteTombstone`, :func:`inactive`), the parked changes it
makes stale (:func:`superseded`), and the deterministic, time-ordered id of a new agent
(:func:`new_agent_id`). Which change applies is ``sf_metadata.decide``'s business."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sf_metadata.changes import as_utc
from sf_metadata.decision_types import Action, Decision, PendingChange, StoredState, StoredUser
from sf_metadata.effects import (
    EndReason,
    EndSessions,
    ParkChange,
    UpsertAgent,
    WriteTombstone,
)
from sf_metadata.mapping import AgentRecord, field_label, username_key

__all__ = [
    "NEW_AGENT_NS",
    "NOT_PROVISIONED",
    "as_stamp",
    "changed_fields",
    "decision",
    "inactive",
    "later",
    "new_agent_id",
    "own_parked",
    "superseded",
    "unchanged_reason",
    "upsert",
    "uuid5_hex",
]

#: The reason of an inactive user's change that leaves no agent (IGNORED).
NOT_PROVISIONED = "user is not provisioned"

#: Namespace of the uuid5 ids of new agents (any fixed value; never change it).
NEW_AGENT_NS = uuid.UUID("5a0c3f4e-2b1d-4e8a-9c47-0d5e6f7a8b9c")
#: SHA-1 state after the namespace's bytes (each new id copies it and adds its name).
_NEW_AGENT_SHA1 = hashlib.sha1(NEW_AGENT_NS.bytes, usedforsecurity=False)


def new_agent_id(organization_id: str, c: PendingChange) -> str:
    """A new agent id: 32 hex characters, derived from the organization, user and change,
    so deciding twice gives equal decisions. Unique: an organization's user has at most
    one agent row, and a tombstone keeps its id for every later restore.

    Time-ordered (issue 11 item 2): the first 12 hex characters are the change's
    ``SystemModstamp`` in milliseconds since 1970 (UUIDv7's layout, RFC 9562 section 5.7,
    with the stamp for the clock), the rest the uuid5 digest; so new agents land at the end
    of the primary-key index instead of dirtying random pages of it. A change without a
    stamp keeps the plain uuid5. Ids already stored (uuid4 or uuid5 hex) stay valid."""
    stamp = c.stamp.isoformat() if c.stamp else ""
    name = f"{organization_id}\n{c.crm_id}\n{c.notification_id or ''}\n{stamp}\n{c.index}"
    digest = uuid5_hex(name)
    if c.stamp is None:
        return digest
    millis = int(c.stamp.timestamp() * 1000)
    if not 0 <= millis < 1 << 48:
        return digest
    return f"{millis:012x}7{digest[13:]}"


def uuid5_hex(name: str) -> str:
    """``uuid.uuid5(NEW_AGENT_NS, name).hex`` (RFC 9562 section 5.5: SHA-1 of the
    namespace and the name, version 5, variant 10), without building UUID objects."""
    digest = _NEW_AGENT_SHA1.copy()
    digest.update(name.encode("utf-8"))
    b = bytearray(digest.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


def decision(
    c: PendingChange,
    action: Action,
    reason: str,
    *,
    agent: AgentRecord | None = None,
    effect: UpsertAgent | WriteTombstone | None = None,
    end_sessions: EndSessions | None = None,
    park: ParkChange | None = None,
    unpark: tuple[int, ...] = (),
) -> Decision:
    return Decision(
        index=c.index,
        notification_id=c.notification_id,
        crm_id=c.crm_id,
        action=action,
        reason=reason,
        stamp=c.stamp,
        agent=agent,
        mark_processed=c.notification_id is not None and c.parked_id is None,
        effect=effect,
        end_sessions=end_sessions,
        park=park,
        unpark=unpark,
    )


def own_parked(c: PendingChange) -> tuple[int, ...]:
    return (c.parked_id,) if c.parked_id is not None else ()


def as_stamp(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return as_stamp(a if b is None else b)
    return max(as_utc(a), as_utc(b))


def superseded(c: PendingChange, state: StoredState) -> tuple[int, ...]:
    """The parked changes of ``c``'s user that ``c`` makes stale (not newer than it), and
    ``c``'s own parked row."""
    parked = state.parked.get(c.crm_id)
    if not parked:  # the common case: nothing parked for this user
        return own_parked(c)
    ids = set(own_parked(c))
    for p in parked:
        if c.stamp is None or p.system_modstamp is None or as_utc(p.system_modstamp) <= c.stamp:
            ids.add(p.id)
    return tuple(sorted(ids))


def inactive(
    c: PendingChange,
    state: StoredState,
    stored: StoredUser | None,
    stamp: datetime | None,
) -> Decision:
    unpark = superseded(c, state)
    if stored is not None and stored.provisioned and stored.agent_id is not None:
        effect = WriteTombstone(
            agent_id=stored.agent_id,
            system_modstamp=stamp,
            insert=not stored.tombstoned,
            deprovisioned=True,
            delete_agent=True,
            released_key=username_key(stored.username),
            name=c.agent.name,
        )
        end = EndSessions(agent_id=stored.agent_id, reason=EndReason.DEPROVISIONED)
        return decision(
            c,
            Action.DEPROVISIONED,
            "IsActive is false",
            effect=effect,
            end_sessions=end,
            unpark=unpark,
        )
    tomb: WriteTombstone | None = None
    if stored is None:
        tomb = WriteTombstone(
            agent_id=None,
            system_modstamp=c.stamp,
            insert=True,
            deprovisioned=True,
            delete_agent=False,
            released_key=None,
            name=c.agent.name,
        )
    elif stamp != as_stamp(stored.system_modstamp):
        tomb = WriteTombstone(
            agent_id=stored.agent_id,
            system_modstamp=stamp,
            insert=not stored.tombstoned,
            deprovisioned=not stored.tombstoned,
            delete_agent=False,
            released_key=None,
            name=c.agent.name,
        )
    return decision(c, Action.IGNORED, NOT_PROVISIONED, effect=tomb, unpark=unpark)


#: How many changed fields an UPDATED reason names before it says "and N more".
_NAMED_FIELDS = 6


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of the agent JSON (CONTRACT section 2) whose values differ between
    ``old`` and ``new``, in ``new``'s key order then ``old``'s leftovers: nested objects
    are walked (``crm.email``, ``crm.customFields.Region__c``), lists compare whole
    (``phoneNumbers``)."""
    paths: list[str] = []
    for key in [*new, *(k for k in old if k not in new)]:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            paths.extend(changed_fields(before, after, f"{prefix}{key}."))
        else:
            paths.append(f"{prefix}{key}")
    return paths


def _updated_reason(disabled: bool, fields: list[str] | None = None) -> str:
    """``fields``: the changed agent JSON paths (named by their labels,
    ``sf_metadata.mapping.field_label``); ``[]`` when nothing but the stamp moved, ``None``
    when the stored agent JSON was not at hand to compare."""
    why = ", disabled: no CallCenterId" if disabled else ""
    if fields is None:
        return f"IsActive is true: agent updated{why}"
    if not fields:
        return f"IsActive is true: agent already up to date{why}"
    named = ", ".join(map(field_label, fields[:_NAMED_FIELDS]))
    more = f" and {len(fields) - _NAMED_FIELDS} more" if len(fields) > _NAMED_FIELDS else ""
    return f"IsActive is true: agent updated ({named}{more} changed){why}"


def unchanged_reason(*, provisioned: bool, disabled: bool) -> str:
    """The reason :func:`decide_changes` gives a change that leaves its user exactly as
    stored (same stamp, same agent JSON, same username, no tombstone, nothing parked):
    an agent's (``provisioned``; ``disabled`` is its JSON's) or a tombstone's."""
    return _updated_reason(disabled, []) if provisioned else NOT_PROVISIONED


def upsert_action(
    stored: StoredUser | None, agent: AgentRecord, fields: list[str] | None = None
) -> tuple[Action, str]:
    """The action and reason of an applied active change; ``fields``: what an update
    changed (:func:`_updated_reason`)."""
    why = ", disabled: no CallCenterId" if agent.disabled else ""
    if stored is None:
        return Action.CREATED, f"IsActive is true: new agent{why}"
    if stored.provisioned:
        return Action.UPDATED, _updated_reason(agent.disabled, fields)
    if stored.agent_id is not None:
        return Action.RESTORED, f"IsActive is true: deprovisioned agent restored{why}"
    return Action.CREATED, f"IsActive is true: new agent (user was never provisioned){why}"


def upsert(
    c: PendingChange, state: StoredState, stored: StoredUser | None, stamp: datetime | None
) -> Decision:
    """An applied active change: the agent row (or nothing when nothing differs), the
    sessions of an agent that becomes disabled, the parked changes it makes stale."""
    unpark = superseded(c, state)
    held = stored if stored is not None and stored.provisioned else None
    agent_id = (
        stored.agent_id
        if stored is not None and stored.agent_id is not None
        else new_agent_id(state.organization_id, c)
    )
    old_key = username_key(held.username) if held is not None else None
    new_key = username_key(c.agent.username)
    data = c.agent.to_json()
    data_changed = held is None or held.data is None or held.data != data
    fields = None  # walked only when the (C-speed) comparison found a difference
    if held is not None and held.data is not None:
        fields = changed_fields(held.data, data) if data_changed else []
    action, reason = upsert_action(stored, c.agent, fields)
    end = None
    was_disabled = held is not None and held.data is not None and held.data.get("disabled")
    if held is not None and c.agent.disabled and not was_disabled:
        end = EndSessions(agent_id=agent_id, reason=EndReason.DISABLED)
    tombstoned = stored is not None and stored.tombstoned
    if (
        held is not None
        and not data_changed
        and not tombstoned
        and old_key == new_key
        and stamp == as_stamp(held.system_modstamp)
    ):
        return decision(c, action, reason, agent=c.agent, end_sessions=end, unpark=unpark)
    effect = UpsertAgent(
        agent_id=agent_id,
        record=c.agent,
        system_modstamp=stamp,
        insert=held is None,
        drop_tombstone=tombstoned,
        released_key=old_key if old_key is not None and old_key != new_key else None,
        data_changed=data_changed,
        record_json=data,
        key=new_key,
    )
    return decision(
        c, action, reason, agent=c.agent, effect=effect, end_sessions=end, unpark=unpark
    )
