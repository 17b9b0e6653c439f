"""The pure reconcile plan: (Users read from Salesforce, stored state) -> one row per user.

No I/O. The store loads a :class:`ReconcileState` (every agent and tombstone of the
organization for a full run; those of the users read, and the holders of the usernames
they claim, for an incremental one), calls :func:`plan_users`, stores the plan, and later
applies its rows; applying decides the rows with effects again with the same function
against the then stored state, so a change stored after the plan is never rolled back.

Rules: CONTRACT section 6 on top of section 2 (mapping, stamps, tombstones, usernames):

- every User read gets exactly one row: ``create``, ``update``, ``restore``,
  ``deprovision``, ``unchanged`` or ``failed``;
- a record that cannot be decided (no/invalid ``Id``, no ``IsActive``, a bad stamp, a
  related id that is not an id, an over-long username) is ``failed`` with the reason
  the receiver gives;
- a stored change with a newer ``SystemModstamp`` wins: ``unchanged`` (never rolled
  back); an equal or older stored stamp is brought in line;
- ``IsActive`` false: ``deprovision`` a provisioned agent; a user without an agent is
  ``unchanged`` but leaves (or advances) a tombstone, as in the receiver;
- ``IsActive`` true: ``create`` (no stored state, or a tombstone without an agent id),
  ``restore`` (a tombstone with our agent id: same id), ``update`` when the mapped agent
  differs from the stored one, else ``unchanged`` (the stored stamp is still advanced, so
  a late, older Outbound Message stays stale);
- usernames (casefolded) stay unique: when several users claim one, a user who already
  holds it keeps it; a holder that keeps its agent as it is (not read, unchanged because
  newer, failed) keeps it too; otherwise the earliest by ``SystemModstamp``, then ``Id``,
  gets it; the others are ``failed`` ("username ... is already used by ..."), decided to
  a fixed point (a loser keeps its old username, which may decide another claim);
- ``notFound``: provisioned agents whose user a full read did not return; listed apart,
  never deprovisioned by a run.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sf_metadata.decision import parse_stamp
from sf_metadata.errors import NotificationError
from sf_metadata.ids import USER, try_canonical_id
from sf_metadata.mapping import AgentRecord, map_user, parse_boolean, username_key
from sf_metadata.soql import record_fields

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_GUARD",
    "DeletionGuard",
    "Effect",
    "NotFound",
    "PlanRow",
    "QueriedUser",
    "ReconcileAction",
    "ReconcilePlan",
    "ReconcileState",
    "StoredAgent",
    "count_rows",
    "plan_users",
    "read_user",
]


class ReconcileAction(enum.StrEnum):
    """One row's action; the values are CONTRACT section 6's ``counts`` keys."""

    CREATE = "create"
    UPDATE = "update"
    RESTORE = "restore"
    DEPROVISION = "deprovision"
    UNCHANGED = "unchanged"
    FAILED = "failed"


#: The keys of ``counts`` in CONTRACT section 6, in its order.
COUNT_KEYS: tuple[str, ...] = (*(a.value for a in ReconcileAction), "notFound")


class Effect(enum.StrEnum):
    """What applying a row writes: ``upsert`` the agent (data and stamp), ``tombstone``
    (deprovision an agent, or keep/advance the stamp of a user without one), ``none``."""

    UPSERT = "upsert"
    TOMBSTONE = "tombstone"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class QueriedUser:
    """One User record as read, decoded once.

    ``crm_id`` is the canonical 18-character id (``None`` when ``Id`` is missing or not a
    User id; then ``raw_id`` holds its text, cut to 40 characters). Either ``error`` is
    ``None`` and ``agent``/``stamp``/``active`` hold the mapping, the ordering stamp
    (SystemModstamp, else LastModifiedDate) and ``IsActive``; or ``error`` is the reason.
    """

    crm_id: str | None
    raw_id: str
    agent: AgentRecord | None
    stamp: datetime | None
    active: bool
    error: str | None


def read_user(record: Mapping[str, Any]) -> QueriedUser:
    """Decode one SOQL JSON record (see :func:`~sf_metadata.soql.record_fields`) with the
    receiver's mapping (:func:`~sf_metadata.mapping.map_user`). Raises nothing: bad
    content becomes ``error`` (the receiver's reason text)."""
    fields = record_fields(record)
    raw = fields.get("Id") or ""
    crm = try_canonical_id(raw, USER)
    if not raw.strip():
        return QueriedUser(None, "", None, None, False, "the User record has no Id")
    try:
        agent = map_user(raw, fields)
        stamp = parse_stamp(fields)
        active = parse_boolean("IsActive", fields.get("IsActive"))
    except NotificationError as exc:
        return QueriedUser(crm, raw[:40], None, None, False, exc.message)
    return QueriedUser(agent.crm_id, raw[:40], agent, stamp, active, None)


@dataclass(frozen=True, slots=True)
class StoredAgent:
    """What the store holds for one user: ``provisioned`` (an agent) or a tombstone.
    ``agent_id`` is our id (``None`` for a tombstone of a never-provisioned user);
    ``stamp`` the last applied SystemModstamp (aware UTC or ``None``); ``username`` the
    agent's; ``data`` the stored agent JSON (``None`` for a tombstone)."""

    crm_id: str
    agent_id: str | None
    provisioned: bool
    stamp: datetime | None
    username: str | None
    data: Mapping[str, Any] | None
    has_tombstone: bool = False


@dataclass(frozen=True, slots=True)
class ReconcileState:
    """Snapshot of the store for one plan.

    - ``users``: by 18-character crm id: every user read that has stored state (a full run
      passes every agent and tombstone of the organization);
    - ``username_holders``: casefolded username -> crm id of the provisioned agent holding
      it, for at least every username the read users claim;
    - ``full``: ``users`` holds every provisioned agent, so those not read are ``notFound``;
    - ``agent_count``: provisioned agents of the organization before the plan.
    """

    users: Mapping[str, StoredAgent]
    username_holders: Mapping[str, str]
    full: bool
    agent_count: int


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One user's row. ``crm_id`` is the 18-character id (or the raw ``Id`` text of an
    undecidable record); ``username`` the agent username it maps to (else the stored
    one); ``agent``/``stamp``/``active`` the user as read (``agent`` is the mapped record
    of a decidable user, kept so applying can decide the row again); ``effect`` what
    applying writes."""

    crm_id: str
    action: ReconcileAction
    reason: str
    username: str | None
    effect: Effect
    stamp: datetime | None = None
    active: bool = False
    agent: AgentRecord | None = None


@dataclass(frozen=True, slots=True)
class NotFound:
    """A provisioned agent whose Salesforce user a full read did not return."""

    crm_id: str
    username: str | None


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    """Rows in read order (duplicates and undecidable records included), ``not_found``
    sorted by crm id, ``counts`` by :data:`COUNT_KEYS`."""

    rows: tuple[PlanRow, ...]
    not_found: tuple[NotFound, ...]
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class DeletionGuard:
    """The deletion guard (CONTRACT section 6; defaults from ``dashboard-anchors.md`` (c)):
    a plan is held when its ``deprovision`` count is above ``max_deletions`` (Entra Connect
    Sync's default threshold, 500 per run), or above ``share`` of the organization's
    agents before the plan once that count is above ``floor`` (Okta's import safeguard
    and GMM: 20 %; the floor keeps a 3-agent org from holding every single leaver)."""

    max_deletions: int = 500
    share: float = 0.20
    floor: int = 10

    def hold_reason(self, deprovisions: int, agents_before: int) -> str | None:
        """Why a plan with ``deprovisions`` deprovisions is held, or ``None``."""
        if deprovisions > self.max_deletions:
            return (
                f"{deprovisions} deprovisions is above the limit of {self.max_deletions} "
                f"(--max-deletions)"
            )
        if deprovisions > self.floor and deprovisions > self.share * agents_before:
            return (
                f"{deprovisions} deprovisions is more than {self.share:.0%} of the "
                f"{agents_before} agents"
            )
        return None


DEFAULT_GUARD = DeletionGuard()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _order(user: QueriedUser) -> tuple[datetime, str]:
    stamp = _utc(user.stamp) if user.stamp is not None else datetime.max.replace(tzinfo=UTC)
    return (stamp, user.crm_id or "")


def count_rows(rows: Iterable[PlanRow], not_found: int) -> dict[str, int]:
    """``counts`` of CONTRACT section 6 (every key present, zeros included)."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for row in rows:
        counts[row.action.value] += 1
    counts["notFound"] = not_found
    return counts


def plan_users(users: Sequence[QueriedUser], state: ReconcileState) -> ReconcilePlan:
    """Plan every user read (module docstring). Pure; raises nothing."""
    rows: list[PlanRow | None] = [None] * len(users)
    latest: dict[str, int] = {}
    for i, u in enumerate(users):
        if u.error is not None or u.crm_id is None or u.agent is None:
            rows[i] = PlanRow(
                u.crm_id or u.raw_id,
                ReconcileAction.FAILED,
                u.error or "the User record could not be read",
                None,
                Effect.NONE,
            )
            continue
        best = latest.get(u.crm_id)
        if best is None or _order(u) >= _order(users[best]):
            latest[u.crm_id] = i
    for i, u in enumerate(users):
        if rows[i] is None and u.crm_id is not None and latest[u.crm_id] != i:
            rows[i] = PlanRow(
                u.crm_id,
                ReconcileAction.UNCHANGED,
                "repeated in the read: the newest record of this user decides",
                u.agent.username if u.agent else None,
                Effect.NONE,
            )

    claims: dict[int, str | None] = {}
    releasing: set[str] = set()
    for crm, i in latest.items():
        u = users[i]
        assert u.agent is not None
        stored = state.users.get(crm)
        if (
            stored is not None
            and stored.stamp is not None
            and u.stamp is not None
            and _utc(u.stamp) < _utc(stored.stamp)
        ):
            rows[i] = PlanRow(
                crm,
                ReconcileAction.UNCHANGED,
                f"the stored change is newer (SystemModstamp {_utc(stored.stamp).isoformat()}"
                f" > {_utc(u.stamp).isoformat()})",
                stored.username,
                Effect.NONE,
            )
        elif not u.active:
            row = _inactive_row(u, stored)
            rows[i] = row
            if row.action is ReconcileAction.DEPROVISION:
                releasing.add(crm)
        else:
            claims[i] = username_key(u.agent.username)

    failed = _resolve_usernames(users, claims, releasing, state)
    for i in claims:
        u = users[i]
        assert u.agent is not None and u.crm_id is not None
        if i in failed:
            rows[i] = PlanRow(
                u.crm_id,
                ReconcileAction.FAILED,
                f"username {u.agent.username} is already used by Salesforce user {failed[i]}",
                u.agent.username,
                Effect.NONE,
            )
            continue
        rows[i] = _active_row(u, state.users.get(u.crm_id))

    done = tuple(r for r in rows if r is not None)
    not_found: tuple[NotFound, ...] = ()
    if state.full:
        read = {u.crm_id for u in users if u.crm_id is not None}
        not_found = tuple(
            NotFound(s.crm_id, s.username)
            for crm, s in sorted(state.users.items())
            if s.provisioned and crm not in read
        )
    return ReconcilePlan(done, not_found, count_rows(done, len(not_found)))


def _inactive_row(u: QueriedUser, stored: StoredAgent | None) -> PlanRow:
    assert u.crm_id is not None and u.agent is not None
    if stored is not None and stored.provisioned:
        return PlanRow(
            u.crm_id,
            ReconcileAction.DEPROVISION,
            "IsActive is false",
            stored.username,
            Effect.TOMBSTONE,
            u.stamp,
            False,
            u.agent,
        )
    newer = stored is None or (
        u.stamp is not None and (stored.stamp is None or _utc(u.stamp) > _utc(stored.stamp))
    )
    return PlanRow(
        u.crm_id,
        ReconcileAction.UNCHANGED,
        "user is not provisioned",
        None,
        Effect.TOMBSTONE if newer else Effect.NONE,
        u.stamp,
        False,
        u.agent,
    )


def _active_row(u: QueriedUser, stored: StoredAgent | None) -> PlanRow:
    assert u.crm_id is not None and u.agent is not None
    agent = u.agent

    def row(action: ReconcileAction, reason: str, effect: Effect = Effect.UPSERT) -> PlanRow:
        return PlanRow(u.crm_id or "", action, reason, agent.username, effect, u.stamp, True, agent)

    if stored is None:
        return row(ReconcileAction.CREATE, "IsActive is true: new agent")
    if not stored.provisioned:
        if stored.agent_id is not None:
            return row(ReconcileAction.RESTORE, "IsActive is true: deprovisioned agent restored")
        return row(
            ReconcileAction.CREATE, "IsActive is true: new agent (user was never provisioned)"
        )
    if stored.data is not None and dict(stored.data) == agent.to_json():
        newer = u.stamp is not None and (stored.stamp is None or _utc(u.stamp) > _utc(stored.stamp))
        return row(
            ReconcileAction.UNCHANGED,
            "the agent matches the user",
            Effect.UPSERT if newer else Effect.NONE,
        )
    return row(ReconcileAction.UPDATE, "IsActive is true: agent updated")


def _resolve_usernames(
    users: Sequence[QueriedUser],
    claims: Mapping[int, str | None],
    releasing: set[str],
    state: ReconcileState,
) -> dict[int, str]:
    """Indexes of claims that lose their username -> crm id of the user who keeps it.

    To a fixed point: users not claiming (not read, unchanged because newer, failed,
    or losers of an earlier round) keep the username they hold; a user being
    deprovisioned (``releasing``) releases it."""
    claimant_crm = {i: users[i].crm_id or "" for i in claims}
    failed: dict[int, str] = {}
    while True:
        applying = {claimant_crm[i] for i in claims if i not in failed}
        by_key: dict[str, list[int]] = {}
        for i, key in claims.items():
            if i not in failed and key is not None:
                by_key.setdefault(key, []).append(i)
        new_failures: dict[int, str] = {}
        for key, wanting in by_key.items():
            holder = state.username_holders.get(key)
            if holder is not None and holder not in applying and holder not in releasing:
                for i in wanting:
                    new_failures[i] = holder
                continue
            if len(wanting) == 1:
                continue
            keeper = next((i for i in wanting if claimant_crm[i] == holder), None)
            if keeper is None:
                keeper = min(wanting, key=lambda i: _order(users[i]))
            for i in wanting:
                if i != keeper:
                    new_failures[i] = claimant_crm[keeper]
        if not new_failures:
            return failed
        failed.update(new_failures)
