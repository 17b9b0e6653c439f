"""Reconcile's own username rules over one read (``sf_metadata.reconcile``, CONTRACT
section 6): :func:`final_owners`, who holds each username once the read is applied (the
tie rule: a holder keeps its own, else the earliest by ``SystemModstamp``, then ``Id``,
to a fixed point), and :func:`park_once` (a user who keeps colliding parks one change,
not one a run). Pure; raise nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sf_metadata.changes import as_utc
from sf_metadata.decision import Decision, StoredState
from sf_metadata.reconcile_read import QueriedUser

__all__ = ["as_utc_stamp", "final_owners", "park_once", "queried_at", "read_order"]


def as_utc_stamp(value: datetime) -> datetime:
    """``value`` in UTC (a naive one taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_order(user: QueriedUser) -> tuple[datetime, str]:
    """The tie rule's order: ``SystemModstamp`` (none: last), then ``Id``."""
    stamp = as_utc_stamp(user.stamp) if user.stamp is not None else datetime.max.replace(tzinfo=UTC)
    return (stamp, user.crm_id or "")


def park_once(d: Decision, stored: StoredState) -> Decision:
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


def queried_at(queried: Sequence[QueriedUser | None], i: int) -> QueriedUser:
    """``queried[i]``, which is set."""
    u = queried[i]
    assert u is not None
    return u


def final_owners(
    users: Sequence[QueriedUser | None],
    claims: Mapping[int, str | None],
    releasing: set[str],
    holders: Mapping[str, str],
) -> dict[str, str]:
    """Casefolded username -> crm id of the user who has it once the read is applied: the
    winner of every claimed username and every holder that keeps its own (module
    docstring), so the decision fails exactly the losers, naming the winner."""
    claimant = {i: queried_at(users, i).crm_id or "" for i in claims}
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
                keeper = min(wanting, key=lambda i: read_order(queried_at(users, i)))
            owners[key] = claimant[keeper]
            new_failures.update(i for i in wanting if i != keeper)
        if not new_failures:
            return owners
        failed |= new_failures
