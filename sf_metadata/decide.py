"""The decision core shared by every source of user changes (pure, no I/O):
:func:`decide_changes` (an Outbound Message's readable User notifications, Users that
reconcile queried, a replayed notification) and :func:`decide_parked` (changes parked on
a username collision, decided again once the username is released).

Rules: the project's CONTRACT section 2 (lifecycle, order, collisions, parking); each
:class:`~sf_metadata.decision_types.Decision` carries its effect, so the store writes
what it is told and decides nothing. Which change of a batch applies is decided here
(the username replay, collisions, staleness); what an applied change writes, and the ids
of new agents, in ``sf_metadata.change_effects``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sf_metadata.change_effects import NEW_AGENT_NS, NOT_PROVISIONED, unchanged_reason, uuid5_hex
from sf_metadata.change_effects import as_stamp as _stamp
from sf_metadata.change_effects import decision as _decision
from sf_metadata.change_effects import inactive as _inactive
from sf_metadata.change_effects import later as _later
from sf_metadata.change_effects import own_parked as _own
from sf_metadata.change_effects import upsert as _upsert
from sf_metadata.decision_types import Action, Decision, PendingChange, StoredState
from sf_metadata.effects import (
    ParkChange,
    ParkedChange,
)
from sf_metadata.mapping import username_key

__all__ = ["NOT_PROVISIONED", "decide_changes", "decide_parked", "rank", "unchanged_reason"]

#: The names they had here before ``sf_metadata.change_effects`` (tests read them).
_NEW_AGENT_NS = NEW_AGENT_NS
_uuid5_hex = uuid5_hex


def rank(c: PendingChange) -> tuple[int, datetime, int]:
    """The order in which changes happened: by stamp, a missing stamp being newest
    (arrival order), then by ``index``."""
    if c.stamp is None:
        return (1, datetime.min.replace(tzinfo=UTC), c.index)
    return (0, c.stamp, c.index)


def decide_changes(
    changes: Sequence[PendingChange],
    state: StoredState,
    *,
    superseded: str = "superseded by a newer change in the same message",
) -> list[Decision]:
    """Decide readable user changes against the stored state; one
    :class:`~sf_metadata.decision_types.Decision` each, in the order of ``changes``,
    marked processed when they have a notification id (and are not parked ones).

    - several changes for one user: the newest (:func:`rank`) wins; the others are STALE
      with reason ``superseded``;
    - stamp older than the stored ``system_modstamp``: STALE (equal applies);
    - ``active``: CREATED / UPDATED / RESTORED (a tombstone with an agent id: same id),
      effect :class:`~sf_metadata.effects.UpsertAgent` (``None`` when nothing differs);
      an agent that becomes disabled has its sessions ended (``EndReason.DISABLED``);
    - not ``active``: DEPROVISIONED if provisioned (tombstone, agent deleted, sessions
      ended), else IGNORED (a tombstone holding the newest stamp);
    - the mapped username (casefolded) held by another user: FAILED, nothing merged, and
      the change is parked (:class:`~sf_metadata.effects.ParkChange`). A ``None``
      username never collides. Who holds what is found by :func:`_replay`: every change
      of the batch (superseded ones too: their renames and deprovisions released names in
      Salesforce) taken one at a time in :func:`rank` order, as if each came in its own
      message, parking and waking as the store does; so a batch ends in the agents that
      delivering its changes one by one, in order, gives. When the newest change of a user
      collides, the newest one of that user that did not applies (its older renames
      count). Usernames that only a rotation can free (A holds B's new name and B holds
      A's: a swap whose intermediate rename was lost, as reconcile finds it) move together;
    - a change that applies forgets the user's parked changes not newer than it.

    Pure; raises nothing.
    """
    winners: dict[str, PendingChange] = {}
    for c in changes:
        best = winners.get(c.crm_id)
        if best is None or rank(c) > rank(best):
            winners[c.crm_id] = c
    replay = _replay(changes, state)
    out: list[Decision] = []
    for c in changes:
        if replay.applied.get(c.crm_id) is c:
            out.append(_decide(c, state))
        elif winners[c.crm_id] is c and c.crm_id in replay.blocked:
            out.append(_failed(c, state, replay.blocked[c.crm_id]))
        elif winners[c.crm_id] is c:
            out.append(_decide(c, state))  # older than the stored change: STALE
        else:
            out.append(_decision(c, Action.STALE, superseded, unpark=_own(c)))
    return out


def decide_parked(
    parked: Sequence[ParkedChange], state: StoredState, *, first_index: int
) -> list[Decision]:
    """Decide again parked changes whose username was released (``state`` loaded after
    the release, with their users' parked changes); one decision each, ``index`` from
    ``first_index`` on, never marked processed, each forgetting its own parked row (one
    that collides again is parked anew). One older than its user's stored change is
    STALE; one that applies is the user's newest applied change from then on."""
    pending = [
        PendingChange(
            index=first_index + i,
            notification_id=p.notification_id,
            agent=p.record,
            stamp=p.system_modstamp,
            active=True,
            parked_id=p.id,
        )
        for i, p in enumerate(parked)
    ]
    decisions = decide_changes(pending, state, superseded="superseded by a newer parked change")
    return [
        replace(
            d,
            reason="parked change decided again, username "
            f"{p.record.username or p.username_key} was released: {d.reason}",
        )
        for d, p in zip(decisions, parked, strict=True)
    ]


class _Owners:
    """Casefolded username -> crm id of its holder while a batch is decided, with the
    reverse index (crm id -> its usernames), so releasing a user's usernames costs the
    number of usernames it holds, not the size of the map: deciding n changes against n
    owners is linear (it was quadratic: a scan of every owner per release)."""

    __slots__ = ("_by_crm", "_by_key")

    def __init__(self, owners: Mapping[str, str]) -> None:
        self._by_key: dict[str, str] = dict(owners)
        self._by_crm: dict[str, list[str]] = {}
        for key, crm in self._by_key.items():
            self._by_crm.setdefault(crm, []).append(key)

    def get(self, key: str) -> str | None:
        return self._by_key.get(key)

    def release(self, crm_id: str) -> list[str]:
        """Forget every username ``crm_id`` holds; return them."""
        keys = self._by_crm.pop(crm_id, [])
        for key in keys:
            del self._by_key[key]
        return keys

    def claim(self, key: str, crm_id: str) -> None:
        """``crm_id`` holds ``key`` (free, or held by ``crm_id`` itself)."""
        previous = self._by_key.get(key)
        if previous == crm_id:
            return
        if previous is not None:
            self._by_crm[previous].remove(key)
        self._by_key[key] = crm_id
        self._by_crm.setdefault(crm_id, []).append(key)


@dataclass
class _Replay:
    """What :func:`_replay` found: per crm id, the change that applies (the user's newest
    change that does not collide, or a deprovision) and, for a user whose newest change
    still collides, the holder of the username it claims."""

    applied: dict[str, PendingChange] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)


def _replay(changes: Sequence[PendingChange], state: StoredState) -> _Replay:
    """Take the batch's changes one at a time in :func:`rank` order, as the store takes
    messages of one change each (CONTRACT section 2): a change older than the user's
    stored one is stale and skipped; a deprovision releases the user's usernames; an
    active change whose username another user holds waits (parked) on that username, and
    is taken again when it is released, unless a newer change of its user applied
    meanwhile; otherwise the user's usernames are released and the new one claimed. Then
    rotations: newest changes that wait on each other in a cycle (each holder's own newest
    change gives the name up) apply together. Linear in the batch (each change waits at
    most once per release of a name it claims)."""
    result = _Replay()
    owners = _Owners(state.username_owners)
    waiting: dict[str, list[PendingChange]] = {}
    freed: list[str] = []

    def newest_so_far(c: PendingChange) -> bool:
        done = result.applied.get(c.crm_id)
        return done is None or rank(c) > rank(done)

    def attempt(c: PendingChange) -> None:
        key = username_key(c.agent.username) if c.active else None
        holder = owners.get(key) if key is not None else None
        if key is not None and holder is not None and holder != c.crm_id:
            waiting.setdefault(key, []).append(c)
            return
        freed.extend(k for k in owners.release(c.crm_id) if k != key)
        if key is not None:
            owners.claim(key, c.crm_id)
        result.applied[c.crm_id] = c

    def settle() -> None:
        while freed:
            for c in sorted(waiting.pop(freed.pop(), ()), key=rank):
                if newest_so_far(c):
                    attempt(c)

    for c in sorted(changes, key=rank):
        if not _older_than_stored(c, state):
            attempt(c)
            settle()
    newest: dict[str, PendingChange] = {}
    for queue in waiting.values():
        for c in queue:
            if newest_so_far(c) and (c.crm_id not in newest or rank(c) > rank(newest[c.crm_id])):
                newest[c.crm_id] = c
    while _rotate(newest, owners, result, freed):
        settle()
        newest = {crm: c for crm, c in newest.items() if newest_so_far(c)}
    for crm, c in newest.items():
        holder = owners.get(username_key(c.agent.username) or "")
        if holder is not None and holder != crm:
            result.blocked[crm] = holder
    return result


def _rotate(
    newest: dict[str, PendingChange], owners: _Owners, result: _Replay, freed: list[str]
) -> bool:
    """Apply one cycle of waiting newest changes (A waits on a name B holds, B on one A
    holds, ...), if there is one: each member's usernames are released, then each claims
    its own. Salesforce usernames are unique at every instant, so such a cycle means the
    renames that freed the names were not seen; no name ends up held twice. Returns
    whether a cycle was applied."""

    def wants(crm: str) -> str | None:
        c = newest.get(crm)
        key = username_key(c.agent.username) if c is not None else None
        return owners.get(key) if key is not None else None

    explored: set[str] = set()  # members of paths already followed
    for start in newest:
        path: list[str] = []
        on_path: set[str] = set()
        crm: str | None = start
        while crm is not None and crm in newest and crm not in explored:
            explored.add(crm)
            on_path.add(crm)
            path.append(crm)
            crm = wants(crm)
        if crm is None or crm not in on_path:
            continue
        cycle = path[path.index(crm) :]
        keys = {m: username_key(newest[m].agent.username) for m in cycle}
        released = [k for m in cycle for k in owners.release(m)]
        for m in cycle:
            key = keys[m]
            if key is not None:
                owners.claim(key, m)
            result.applied[m] = newest.pop(m)
        claimed = set(keys.values())
        freed.extend(k for k in released if k not in claimed)
        return True
    return False


def _older_than_stored(c: PendingChange, state: StoredState) -> bool:
    stored = state.users.get(c.crm_id)
    stored_stamp = _stamp(stored.system_modstamp) if stored is not None else None
    return stored_stamp is not None and c.stamp is not None and c.stamp < stored_stamp


def _failed(c: PendingChange, state: StoredState, owner: str) -> Decision:
    """A change whose username ``owner`` holds: FAILED and parked on that username."""
    key = username_key(c.agent.username)
    assert key is not None  # only a change with a username collides
    # A replayed change replaces its own earlier parked copy.
    again = {
        p.id
        for p in state.parked.get(c.crm_id, ())
        if c.notification_id is not None and p.notification_id == c.notification_id
    }
    park = ParkChange(
        username_key=key,
        holder_crm_id=owner,
        record=c.agent,
        system_modstamp=c.stamp,
        notification_id=c.notification_id,
    )
    reason = f"username {c.agent.username} is already used by Salesforce user {owner}"
    return _decision(c, Action.FAILED, reason, park=park, unpark=tuple(sorted({*_own(c), *again})))


def _decide(c: PendingChange, state: StoredState) -> Decision:
    """A change that :func:`_replay` applied, or one older than its user's stored change
    (STALE)."""
    stored = state.users.get(c.crm_id)
    stored_stamp = _stamp(stored.system_modstamp) if stored is not None else None
    if stored_stamp is not None and c.stamp is not None and c.stamp < stored_stamp:
        reason = (
            f"older than the stored change (SystemModstamp {c.stamp.isoformat()} < "
            f"{stored_stamp.isoformat()})"
        )
        return _decision(c, Action.STALE, reason, unpark=_own(c))
    stamp = _later(stored_stamp, c.stamp)
    if not c.active:
        return _inactive(c, state, stored, stamp)
    return _upsert(c, state, stored, stamp)
