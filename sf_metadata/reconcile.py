"""The reconcile plan: (Users read from Salesforce, stored state) -> one row per user.

Pure, and a thin layer over the receiver's decision (``sf_metadata.decision``): every User
read is a :class:`~sf_metadata.decision.PendingChange` decided by
:func:`~sf_metadata.decision.decide_changes` against the same
:class:`~sf_metadata.decision.StoredState`, so mapping, stamps, tombstones and collisions
follow exactly the webhook's rules (CONTRACT section 2), and each row's
:class:`~sf_metadata.decision.Decision` carries the effect that applying writes. What is
reconcile's own (CONTRACT section 6):

- each row's action in the ``counts`` words: ``create``, ``update``, ``restore``,
  ``deprovision``, ``unchanged`` (an inactive user without an agent, a stored change that
  is newer, a user read twice, an agent that already matches: only its stamp may move),
  ``failed`` (undecidable, or a username collision, with the receiver's reason);
- the username tie rule within one read: when several users read claim one username
  (casefolded), a user who already holds it keeps it; a holder whose agent stays as it is
  (not read, unchanged because newer, failed) keeps it too; otherwise the earliest by
  ``SystemModstamp``, then ``Id``, gets it. Resolved to a fixed point (a loser keeps its
  old username, which may decide another claim) into the owners the decision sees;
- ``notFound``: provisioned agents a full read did not return; never deprovisioned;
- parking once: a user who still collides on a username parks its change once; a later
  read that collides the same way keeps that parked row and writes nothing, a newer one
  replaces it (``_park_once``);
- ``counts``, and the deletion guard (:class:`DeletionGuard`);
- the unchanged fast path: :func:`read_record` digests each record as read
  (:func:`record_digest`); a record whose digest equals the one the store vouches for
  (:class:`Known`: the stored agent or tombstone is still exactly what deciding that very
  record wrote, nothing parked) is a :class:`KnownUser`, not mapped, and
  :func:`plan_users` gives it the row the decision would give it (``unchanged``, the
  decision's reason, nothing written). It is decided in full instead when the state
  loaded under the lock no longer vouches for it, or when its user is read twice.
"""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple, cast

import orjson

from sf_metadata.changes import as_utc
from sf_metadata.decide import unchanged_reason
from sf_metadata.decision import (
    Action,
    Decision,
    PendingChange,
    StoredState,
    decide_changes,
    user_change,
)
from sf_metadata.effects import UpsertAgent
from sf_metadata.ids import USER, try_canonical_id
from sf_metadata.mapping import AgentRecord, username_key
from sf_metadata.soql import record_fields

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_GUARD",
    "Buffer",
    "REPEATED_REASON",
    "DeletionGuard",
    "Known",
    "KnownUser",
    "NotFound",
    "PlanRow",
    "QueriedUser",
    "ReadUser",
    "ReconcileAction",
    "ReconcilePlan",
    "ReconcileState",
    "count_rows",
    "decided_users",
    "plan_users",
    "read_page",
    "read_record",
    "read_user",
    "record_digest",
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

#: A record's JSON text: bytes, or a view of the page it was read in.
Buffer = bytes | memoryview

REPEATED_REASON = "repeated in the read: the newest record of this user decides"


@dataclass(frozen=True, slots=True)
class QueriedUser:
    """One User record as read, decoded once with the receiver's
    :func:`~sf_metadata.decision.user_change`.

    ``crm_id`` is the canonical 18-character id (``None`` when ``Id`` is missing or not a
    User id; ``raw_id`` holds its text, cut to 40 characters). Either ``error`` is ``None``
    and ``agent``/``stamp``/``active`` hold the mapping, the ordering stamp
    (SystemModstamp, else LastModifiedDate) and ``IsActive``; or ``error`` is the reason.
    ``digest``: :func:`record_digest` of the record read (``None`` when unknown).
    """

    crm_id: str | None
    raw_id: str
    agent: AgentRecord | None
    stamp: datetime | None
    active: bool
    error: str | None
    digest: str | None = None


def read_user(record: Mapping[str, Any], *, digest: str | None = None) -> QueriedUser:
    """Decode one SOQL JSON record (see :func:`~sf_metadata.soql.record_fields`). Raises
    nothing: bad content becomes ``error`` (the receiver's reason text)."""
    fields = record_fields(record)
    raw = fields.get("Id") or ""
    if not raw.strip():
        return QueriedUser(None, "", None, None, False, "the User record has no Id")
    change = user_change(raw, fields)
    if change.error is not None or change.agent is None:
        crm = try_canonical_id(raw, USER)
        return QueriedUser(crm, raw[:40], None, None, False, change.error or "unreadable")
    return QueriedUser(
        change.agent.crm_id, raw[:40], change.agent, change.stamp, change.active, None, digest
    )


class Known(NamedTuple):
    """What the store vouches for about one user (``receiver.reconcile.digests``):
    ``digest`` is :func:`record_digest` of the User record its stored state was last
    decided from, and that state is still exactly what the decision wrote: an agent
    (``provisioned``; its ``username`` and whether its JSON says ``disabled``) with no
    tombstone, or a tombstone alone (``username`` ``None``) holding that record's stamp;
    nothing parked for the user. A named tuple: a store builds one per user."""

    digest: str
    provisioned: bool
    username: str | None
    disabled: bool


class KnownUser(NamedTuple):
    """A record read whose digest is one stored when the read began: neither parsed nor
    mapped. ``crm_id`` is the user the digest was stored for (a stored 18-character id:
    its ``Id``, since the text digested holds it), ``digest`` its
    :func:`record_digest`, ``raw`` its JSON text (a view of the page read), to decide
    it in full when :func:`plan_users` must (the state loaded under the lock no longer
    vouches for that digest, or the user is read twice). A named tuple: a read builds one
    per user."""

    crm_id: str
    digest: str
    raw: Buffer


ReadUser = QueriedUser | KnownUser


def record_digest(raw: Buffer, salt: bytes) -> str:
    """The digest of one SOQL JSON record as read (``raw``: its exact text): the first 32
    hex characters of the SHA-256 of ``salt`` and ``raw``. The ``salt`` names the mapping
    code, so a changed mapping never meets an old digest; the text holds the ``Id``, so
    one digest never names two users."""
    return hashlib.sha256(salt + raw).hexdigest()[:32]


def read_record(
    raw: Buffer,
    known: Mapping[str, str],
    salt: bytes,
    loads: Callable[[Buffer], Any] = orjson.loads,
) -> QueriedUser | KnownUser | None:
    """The record whose text is ``raw``: a :class:`KnownUser` when ``known`` (digest ->
    crm id, the digests stored) holds its digest (then nothing is parsed or mapped),
    else :func:`read_user` of it parsed with ``loads`` (whose errors propagate);
    ``None`` when that is not a JSON object (not a record)."""
    digest = record_digest(raw, salt)
    crm = known.get(digest)
    if crm is not None:
        return KnownUser(crm, digest, raw)
    record = loads(raw)
    return read_user(record, digest=digest) if isinstance(record, dict) else None


def read_page(
    records: Sequence[Buffer],
    known: Mapping[str, str],
    salt: bytes,
    loads: Callable[[Buffer], Any] = orjson.loads,
) -> list[QueriedUser | KnownUser]:
    """:func:`read_record` of every record of a page in order, those that are not JSON
    objects left out; a page whose every digest is known is read in a few passes over
    it, without a Python loop per record."""
    digests = [record_digest(raw, salt) for raw in records]
    crms = list(map(known.get, digests))
    if None not in crms:
        return list(map(KnownUser, cast(list[str], crms), digests, records))
    out: list[QueriedUser | KnownUser] = []
    for raw, digest, crm in zip(records, digests, crms, strict=True):
        if crm is not None:
            out.append(KnownUser(crm, digest, raw))
        elif isinstance(record := loads(raw), dict):
            out.append(read_user(record, digest=digest))
    return out


@dataclass(frozen=True, slots=True)
class ReconcileState:
    """The store for one plan: ``stored`` is the decision's
    :class:`~sf_metadata.decision.StoredState` (every user read that has stored state,
    and ``username_owners`` for at least every username they claim); ``full``: a full
    read, so agents not read are ``notFound``: those of ``roster`` (crm id -> username,
    every agent of the organization) or, when it is ``None``, the provisioned ones of
    ``stored.users`` (then every agent is there); ``agent_count``: provisioned agents of
    the organization before the plan; ``known``: what the store vouches for now (loaded
    with the rest, under the lock), by crm id; ``decided``: the users this state was
    loaded for and :func:`decided_users` of them (so :func:`plan_users` of those very
    users does not decide it again)."""

    stored: StoredState
    full: bool
    agent_count: int
    known: Mapping[str, Known] = field(default_factory=dict)
    roster: Mapping[str, str | None] | None = None
    decided: tuple[Sequence[ReadUser], Sequence[ReadUser]] | None = None


@dataclass(slots=True)
class PlanRow:
    """One user's row. ``crm_id`` is the 18-character id (or the raw ``Id`` text of an
    undecidable record); ``username`` the agent username it maps to (else the stored
    one). ``stamp``/``active``/``agent`` are the user as read (``agent`` for a decidable
    user), kept so applying can decide the row again; ``writes``: applying it writes
    something (its decision has an effect, ends sessions, parks the change or forgets
    parked changes it supersedes); ``decision``: the
    receiver's decision (``None`` for an undecidable record; not stored); ``digest``:
    the record's :func:`record_digest` (``None`` when unknown). Not frozen (a plan
    builds 50,000 at a time, and a frozen dataclass costs several times more to build),
    but never changed once built."""

    crm_id: str
    action: ReconcileAction
    reason: str
    username: str | None
    writes: bool = False
    stamp: datetime | None = None
    active: bool = False
    agent: AgentRecord | None = None
    decision: Decision | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class NotFound:
    """A provisioned agent whose Salesforce user a full read did not return."""

    crm_id: str
    username: str | None


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    """Rows in read order (repeated users and undecidable records included),
    ``not_found`` sorted by crm id, ``counts`` by :data:`COUNT_KEYS`."""

    rows: tuple[PlanRow, ...]
    not_found: tuple[NotFound, ...]
    counts: Mapping[str, int]

    @property
    def decisions(self) -> list[Decision]:
        """The decisions that write something (what applying passes to the store)."""
        return [r.decision for r in self.rows if r.writes and r.decision is not None]


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
                f"{deprovisions} deprovisions is above the limit of {self.max_deletions} deletions"
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


_ACTION_OF = attrgetter("action")


def count_rows(rows: Iterable[PlanRow], not_found: int) -> dict[str, int]:
    """``counts`` of CONTRACT section 6 (every key present, zeros included)."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for action, n in Counter(map(_ACTION_OF, rows)).items():
        counts[action.value] += n
    counts["notFound"] = not_found
    return counts


def _action(d: Decision) -> ReconcileAction:
    if d.action is Action.CREATED:
        return ReconcileAction.CREATE
    if d.action is Action.RESTORED:
        return ReconcileAction.RESTORE
    if d.action is Action.DEPROVISIONED:
        return ReconcileAction.DEPROVISION
    if d.action is Action.FAILED:
        return ReconcileAction.FAILED
    if d.action is Action.UPDATED:
        changed = isinstance(d.effect, UpsertAgent) and d.effect.data_changed
        return ReconcileAction.UPDATE if changed else ReconcileAction.UNCHANGED
    return ReconcileAction.UNCHANGED  # STALE, IGNORED


def decided_users(users: Sequence[ReadUser], known: Mapping[str, Known]) -> list[ReadUser]:
    """``users`` with every :class:`KnownUser` that ``known`` does not vouch for (no
    entry with its digest: its user changed in the store since the read began), or whose
    user is read more than once, decoded into a :class:`QueriedUser` (to decide in full;
    the state must hold those users: ``receiver.reconcile.state`` loads it after this)."""
    ids = list(map(_CRM_OF, users))
    repeated: set[str | None] = set()
    if len(set(ids)) != len(ids):
        repeated = {crm for crm, n in Counter(ids).items() if n > 1 and crm is not None}
    vouched = list(map(known.get, ids, repeat(_MISSING)))
    if list(map(_DIGEST_OF, users)) == list(map(_DIGEST_OF, vouched)):
        stale = []  # every user read is the digest vouched for (no loop per user)
    else:
        stale = [
            i
            for i, (u, k) in enumerate(zip(users, vouched, strict=True))
            if type(u) is KnownUser and k.digest != u.digest
        ]
    if repeated:
        stale += [i for i, crm in enumerate(ids) if crm in repeated]
    out = list(users)
    for i in dict.fromkeys(stale):
        u = users[i]
        if type(u) is KnownUser:
            out[i] = read_user(orjson.loads(u.raw), digest=u.digest)
    return out


_CRM_OF = attrgetter("crm_id")
_DIGEST_OF = attrgetter("digest")
_REASON_KEY = attrgetter("provisioned", "disabled")
_USERNAME_OF = attrgetter("username")
_MISSING = Known("", False, None, False)  # matches no digest


def plan_users(users: Sequence[ReadUser], state: ReconcileState) -> ReconcilePlan:
    """Plan every user read (module docstring). Pure; raises nothing."""
    stored = state.stored
    if state.decided is not None and state.decided[0] is users:
        read_users = state.decided[1]
    else:
        read_users = decided_users(users, state.known)
    rows: list[PlanRow | None] = [None] * len(read_users)
    queried: list[QueriedUser | None] = [None] * len(read_users)
    latest: dict[str, int] = {}
    # The rows of the users the store vouches for, in passes over them (a run with
    # nothing changed is made of these): the decision's unchanged row, nothing written.
    at = [i for i, r in enumerate(read_users) if type(r) is KnownUser]
    if at:
        crms = cast(list[str], [read_users[i].crm_id for i in at])  # KnownUser's: str
        vouched = list(map(state.known.__getitem__, crms))
        keys = list(map(_REASON_KEY, vouched))
        reason_of = {k: unchanged_reason(provisioned=k[0], disabled=k[1]) for k in set(keys)}
        made = map(
            PlanRow,
            crms,
            repeat(ReconcileAction.UNCHANGED),
            map(reason_of.__getitem__, keys),
            map(_USERNAME_OF, vouched),
        )
        if len(at) == len(rows):
            rows = list(made)
        else:
            for i, row in zip(at, made, strict=True):
                rows[i] = row
    for i, r in enumerate(read_users if len(at) < len(rows) else ()):
        if isinstance(r, KnownUser):
            continue
        u = queried[i] = r
        if u.error is not None or u.crm_id is None or u.agent is None:
            reason = u.error or "the User record could not be read"
            rows[i] = PlanRow(u.crm_id or u.raw_id, ReconcileAction.FAILED, reason, None)
            continue
        best = latest.get(u.crm_id)
        if best is None or _order(u) >= _order(_at(queried, best)):
            latest[u.crm_id] = i

    # Who claims which username, who releases one (section 6 tie rule, then decided).
    claims: dict[int, str | None] = {}
    releasing: set[str] = set()
    for crm, i in latest.items():
        u = _at(queried, i)
        assert u.agent is not None
        held = stored.users.get(crm)
        if (
            held is not None
            and held.system_modstamp is not None
            and u.stamp is not None
            and _utc(u.stamp) < _utc(held.system_modstamp)
        ):
            continue  # the stored change is newer: the agent stays as it is
        if u.active:
            claims[i] = username_key(u.agent.username)
        elif held is not None and held.provisioned:
            releasing.add(crm)
    owners = _final_owners(queried, claims, releasing, stored.username_owners)

    # One decision call for every user read (a user's records together, so the newest
    # decides), against the final owners: each winner finds its username free or its
    # own, each loser finds the winner (decide_changes releases and claims usernames in
    # linear time, so this is linear in the users read).
    pending = [
        PendingChange(index=i, notification_id=None, agent=u.agent, stamp=u.stamp, active=u.active)
        for i, u in enumerate(queried)
        if rows[i] is None and u is not None and u.agent is not None
    ]
    view = replace(stored, username_owners=owners)
    decided = decide_changes(pending, view, superseded=REPEATED_REASON)
    for c, d in zip(pending, decided, strict=True):
        if d.park is not None:
            d = _park_once(d, stored)
        u = _at(queried, c.index)
        held = stored.users.get(c.crm_id)
        action = _action(d)
        username = u.agent.username if u.agent is not None else None
        if action in (ReconcileAction.DEPROVISION, ReconcileAction.UNCHANGED) and not u.active:
            username = held.username if held is not None else None
        writes = (
            d.effect is not None
            or d.end_sessions is not None
            or d.park is not None
            or bool(d.unpark)
        )
        rows[c.index] = PlanRow(
            c.crm_id, action, d.reason, username, writes, u.stamp, u.active, u.agent, d, u.digest
        )

    done = tuple(filter(None, rows))  # every row is set (PlanRow is always true)
    not_found: tuple[NotFound, ...] = ()
    if state.full:
        roster = state.roster
        if roster is None:
            roster = {crm: s.username for crm, s in stored.users.items() if s.provisioned}
        missing = roster.keys() - {u.crm_id for u in read_users}
        not_found = tuple(NotFound(crm, roster[crm]) for crm in sorted(missing))
    return ReconcilePlan(done, not_found, count_rows(done, len(not_found)))


def _park_once(d: Decision, stored: StoredState) -> Decision:
    """A read's change that fails on a username collision (``park``) against the changes
    parked for its user: one that parks exactly what is parked already (same username,
    stamp and agent, from a read) keeps that row and writes nothing; the others parked
    for the user that are not newer are forgotten (the read is the newest they could
    wake to). So a user who collides on every run keeps one parked change."""
    park = d.park
    assert park is not None and d.crm_id is not None
    stamp = as_utc(park.system_modstamp) if park.system_modstamp is not None else None
    same: int | None = None
    older: set[int] = set()
    for p in stored.parked.get(d.crm_id, ()):
        p_stamp = as_utc(p.system_modstamp) if p.system_modstamp is not None else None
        if (
            same is None
            and p.notification_id is None
            and p.username_key == park.username_key
            and p_stamp == stamp
            and p.record == park.record
        ):
            same = p.id
        elif stamp is None or p_stamp is None or p_stamp <= stamp:
            older.add(p.id)
    if same is None and not older:
        return d
    unpark = tuple(
        sorted({*d.unpark, *older} - {same} if same is not None else {*d.unpark, *older})
    )
    return replace(d, park=None if same is not None else park, unpark=unpark)


def _at(queried: Sequence[QueriedUser | None], i: int) -> QueriedUser:
    u = queried[i]
    assert u is not None
    return u


def _final_owners(
    users: Sequence[QueriedUser | None],
    claims: Mapping[int, str | None],
    releasing: set[str],
    holders: Mapping[str, str],
) -> dict[str, str]:
    """Casefolded username -> crm id of the user who has it once the read is applied: the
    winner of every claimed username and every holder that keeps its own (module
    docstring), so the decision fails exactly the losers, naming the winner."""
    claimant = {i: _at(users, i).crm_id or "" for i in claims}
    failed: set[int] = set()
    while True:
        applying = {claimant[i] for i in claims if i not in failed}
        by_key: dict[str, list[int]] = {}
        for i, key in claims.items():
            if i not in failed and key is not None:
                by_key.setdefault(key, []).append(i)
        owners = {
            key: holder
            for key, holder in holders.items()
            if holder not in applying and holder not in releasing
        }
        new_failures: set[int] = set()
        for key, wanting in by_key.items():
            if key in owners:
                new_failures.update(wanting)
                continue
            if len(wanting) == 1:  # the one claimant gets it (as the rules below say)
                owners[key] = claimant[wanting[0]]
                continue
            holder = holders.get(key)
            keeper = next((i for i in wanting if claimant[i] == holder), None)
            if keeper is None:
                keeper = min(wanting, key=lambda i: _order(_at(users, i)))
            owners[key] = claimant[keeper]
            new_failures.update(i for i in wanting if i != keeper)
        if not new_failures:
            return owners
        failed |= new_failures
