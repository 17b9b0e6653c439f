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
  old username, which may decide another claim) into the owners the decision sees
  (``sf_metadata.reconcile_claims.final_owners``);
- ``notFound``: provisioned agents a full read did not return; never deprovisioned;
- parking once: a user who still collides on a username parks its change once; a later
  read that collides the same way keeps that parked row and writes nothing, a newer one
  replaces it (``sf_metadata.reconcile_claims.park_once``);
- ``counts``, and the deletion guard (:class:`DeletionGuard`);
- the unchanged fast path (``sf_metadata.reconcile_read``, whose names this module
  exports too): :func:`read_record` digests each record as read
  (:func:`record_digest`); a record whose digest equals the one the store vouches for
  (:class:`Known`: the stored agent or tombstone is still exactly what deciding that very
  record wrote, nothing parked) is a :class:`KnownUser`, not mapped, and
  :func:`plan_users` gives it the row the decision would give it (``unchanged``, the
  decision's reason, nothing written). It is decided in full instead when the state
  loaded under the lock no longer vouches for it, or when its user is read twice.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import NamedTuple, cast

from sf_metadata.decide import unchanged_reason
from sf_metadata.decision import Action, Decision, PendingChange, StoredState, decide_changes
from sf_metadata.effects import UpsertAgent
from sf_metadata.mapping import AgentRecord, username_key
from sf_metadata.reconcile_claims import (
    as_utc_stamp,
    final_owners,
    park_once,
    queried_at,
    read_order,
)
from sf_metadata.reconcile_read import (
    Buffer,
    Known,
    KnownUser,
    QueriedUser,
    ReadUser,
    Vouching,
    decided_users,
    read_page,
    read_record,
    read_user,
    record_digest,
    vouch,
)

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
    "Vouching",
    "count_rows",
    "decided_users",
    "plan_users",
    "read_page",
    "read_record",
    "read_user",
    "record_digest",
    "vouch",
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

REPEATED_REASON = "repeated in the read: the newest record of this user decides"


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
    loaded for and :func:`vouch` of them (so :func:`plan_users` of those very users
    does not vouch for them again)."""

    stored: StoredState
    full: bool
    agent_count: int
    known: Mapping[str, Known] = field(default_factory=dict)
    roster: Mapping[str, str | None] | None = None
    decided: tuple[Sequence[ReadUser], Vouching] | None = None


class PlanRow(NamedTuple):
    """One user's row. ``crm_id`` is the 18-character id (or the raw ``Id`` text of an
    undecidable record); ``username`` the agent username it maps to (else the stored
    one). ``stamp``/``active``/``agent`` are the user as read (``agent`` for a decidable
    user), kept so applying can decide the row again; ``writes``: applying it writes
    something (its decision has an effect, ends sessions, parks the change or forgets
    parked changes it supersedes); ``decision``: the
    receiver's decision (``None`` for an undecidable record; not stored); ``digest``:
    the record's :func:`record_digest` (``None`` when unknown). A named tuple: a plan
    builds 50,000 at a time, and the rows of the users the store vouches for are built
    from columns without a Python call per row (:func:`plan_users`)."""

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


#: A :class:`PlanRow` from a tuple of its ten values (no Python call per row).
_new_row = partial(tuple.__new__, PlanRow)


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


_REASON_KEY = attrgetter("provisioned", "disabled")
_USERNAME_OF = attrgetter("username")
_CRM_OF = attrgetter("crm_id")
#: The last six values of the row of a user the store vouches for: the
#: :class:`PlanRow` defaults (nothing written, nothing kept to decide it again).
_ROW_DEFAULTS = tuple(PlanRow._field_defaults.values())


def plan_users(users: Sequence[ReadUser], state: ReconcileState) -> ReconcilePlan:
    """Plan every user read (module docstring). Pure; raises nothing."""
    stored = state.stored
    if state.decided is not None and state.decided[0] is users:
        vouching = state.decided[1]
    else:
        vouching = vouch(users, state.known)
    read_users = vouching.users
    rows: list[PlanRow | None] = [None] * len(read_users)
    queried: list[QueriedUser | None] = [None] * len(read_users)
    latest: dict[str, int] = {}
    # The rows of the users the store vouches for, in passes over them (a run with
    # nothing changed is made of these): the decision's unchanged row, nothing written.
    every = vouching.known is not None  # every user is known: no loop per user
    at = (
        range(len(rows)) if every else [i for i, r in enumerate(read_users) if type(r) is KnownUser]
    )
    if at:
        if vouching.known is not None and vouching.ids is not None:
            crms, vouched = vouching.ids, vouching.known
        else:
            crms = cast(list[str], [read_users[i].crm_id for i in at])  # KnownUser's: str
            vouched = list(map(state.known.__getitem__, crms))
        keys = list(map(_REASON_KEY, vouched))
        reason_of = {k: unchanged_reason(provisioned=k[0], disabled=k[1]) for k in set(keys)}
        made = map(
            _new_row,
            zip(
                crms,
                repeat(ReconcileAction.UNCHANGED),
                map(reason_of.__getitem__, keys),
                map(_USERNAME_OF, vouched),
                *map(repeat, _ROW_DEFAULTS),
                strict=False,  # the defaults repeat
            ),
        )
        if every:
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
        if best is None or read_order(u) >= read_order(queried_at(queried, best)):
            latest[u.crm_id] = i

    # Who claims which username, who releases one (section 6 tie rule, then decided).
    claims: dict[int, str | None] = {}
    releasing: set[str] = set()
    for crm, i in latest.items():
        u = queried_at(queried, i)
        assert u.agent is not None
        held = stored.users.get(crm)
        if (
            held is not None
            and held.system_modstamp is not None
            and u.stamp is not None
            and as_utc_stamp(u.stamp) < as_utc_stamp(held.system_modstamp)
        ):
            continue  # the stored change is newer: the agent stays as it is
        if u.active:
            claims[i] = username_key(u.agent.username)
        elif held is not None and held.provisioned:
            releasing.add(crm)
    owners = final_owners(queried, claims, releasing, stored.username_owners)

    # One decision call for every user read (a user's records together, so the newest
    # decides), against the final owners: each winner finds its username free or its
    # own, each loser finds the winner (decide_changes releases and claims usernames in
    # linear time, so this is linear in the users read).
    pending = [
        PendingChange(index=i, notification_id=None, agent=u.agent, stamp=u.stamp, active=u.active)
        for i, u in enumerate(() if every else queried)  # none to decide when all are known
        if rows[i] is None and u is not None and u.agent is not None
    ]
    view = replace(stored, username_owners=owners)
    decided = decide_changes(pending, view, superseded=REPEATED_REASON)
    for c, d in zip(pending, decided, strict=True):
        if d.park is not None:
            d = park_once(d, stored)
        u = queried_at(queried, c.index)
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
        missing = roster.keys() - (vouching.id_set or set(map(_CRM_OF, read_users)))
        not_found = tuple(NotFound(crm, roster[crm]) for crm in sorted(missing))
    return ReconcilePlan(done, not_found, count_rows(done, len(not_found)))
