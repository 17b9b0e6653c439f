"""The ordering soak: a random history of User changes, delivered the way Salesforce does
(batched, retried, duplicated, out of order), and the oracle the store must equal after.

Rules checked (CONTRACT section 2): the most recent change of each user by
``SystemModstamp`` wins; an older change arriving later is stale; each ``Notification/Id``
is applied at most once; an inactive user is deprovisioned (absent from ``users --json``)
and a newer active change restores it. Delivery facts from reference
``outbound-wire-format.md`` section 2.4 (at-least-once, "retried independent of their
order", re-batching unverified: we do it too).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench._messages import BENCH_ORG_ID, UserChange, render_message, sf_id, user_fields

__all__ = [
    "APPLIED_ACTIONS",
    "Scenario",
    "applied_counts",
    "build_scenario",
    "compare_with_oracle",
    "oracle",
]

#: Provisioning-log actions that change the store (CONTRACT section 3, the action words).
APPLIED_ACTIONS = frozenset({"created", "updated", "deprovisioned", "restored"})
_T0 = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Scenario:
    """``changes``: the full history; ``messages``: the bodies in send order (duplicates
    included); ``batches``: the changes each body carries."""

    changes: tuple[UserChange, ...]
    batches: tuple[tuple[UserChange, ...], ...]
    messages: tuple[bytes, ...]


def _history(
    rng: random.Random, user: int, versions: int, run: str, serial: list[int]
) -> list[UserChange]:
    out: list[UserChange] = []
    active = True
    for version in range(1, versions + 1):
        if version > 1:
            roll = rng.random()
            if active and roll < 0.25:
                active = False  # deactivation
            elif not active and roll < 0.6:
                active = True  # reactivation
        serial[0] += 1
        out.append(
            UserChange(
                notification_id=sf_id("04l", serial[0], pod="9s"),
                user=user,
                version=version,
                is_active=active,
                # strictly increasing per user; millisecond offsets keep users apart
                stamp=_T0 + timedelta(seconds=version, milliseconds=user % 1000),
                call_center=rng.random() > 0.2,
                run=run,
            )
        )
    return out


def build_scenario(
    *,
    users: int,
    versions: int,
    seed: int,
    run: str,
    max_batch: int = 25,
    duplicate_rate: float = 0.15,
    rebatch_rate: float = 0.1,
    organization_id: str = BENCH_ORG_ID,
    first_user: int = 1_000_000,
) -> Scenario:
    """A reproducible soak: ``users`` users, ``versions`` changes each (first a create,
    then updates, deactivations, reactivations), shuffled into batches of 1..``max_batch``
    changes; ``duplicate_rate`` of the bodies are sent twice (a redelivery after a lost
    Ack) and ``rebatch_rate`` of the changes are sent again inside another body."""
    rng = random.Random(seed)
    serial = [first_user * 100]
    changes = [
        change
        for user in range(first_user, first_user + users)
        for change in _history(rng, user, versions, run, serial)
    ]
    shuffled = changes[:]
    rng.shuffle(shuffled)
    batches: list[tuple[UserChange, ...]] = []
    i = 0
    while i < len(shuffled):
        size = rng.randint(1, max_batch)
        batches.append(tuple(shuffled[i : i + size]))
        i += size
    extra = [c for c in changes if rng.random() < rebatch_rate]
    rng.shuffle(extra)
    for j in range(0, len(extra), max_batch):
        batches.append(tuple(extra[j : j + max_batch]))
    batches += [b for b in list(batches) if rng.random() < duplicate_rate]
    rng.shuffle(batches)
    return Scenario(
        changes=tuple(changes),
        batches=tuple(batches),
        messages=tuple(render_message(b, organization_id=organization_id) for b in batches),
    )


def oracle(changes: Iterable[UserChange]) -> dict[str, dict[str, Any]]:
    """The expected agents by 18-character ``crmId``: for each user its newest change by
    ``SystemModstamp``; a user whose newest change is inactive is absent. Each value holds
    the fields checked: ``crmId``, ``username``, ``name``, ``disabled``, ``customFields``."""
    newest: dict[int, UserChange] = {}
    for change in changes:
        held = newest.get(change.user)
        if held is None or change.stamp > held.stamp:
            newest[change.user] = change
    expected: dict[str, dict[str, Any]] = {}
    for change in newest.values():
        if not change.is_active:
            continue
        fields = user_fields(change)
        expected[change.user_id] = {
            "crmId": change.user_id,
            "username": change.username,
            "name": change.name,
            "disabled": not change.call_center,
            "customFields": {k: v for k, v in fields.items() if k.endswith("__c")},
        }
    return expected


def compare_with_oracle(
    agents: Sequence[Mapping[str, Any]], expected: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """One line per difference between ``users --json`` and the oracle (empty: equal)."""
    problems: list[str] = []
    seen: dict[str, Mapping[str, Any]] = {}
    for agent in agents:
        crm_id = agent["crmId"]
        if crm_id in seen:
            problems.append(f"{crm_id}: listed twice")
        seen[crm_id] = agent
    for crm_id in sorted(set(seen) - set(expected)):
        problems.append(f"{crm_id}: provisioned, but its newest change is a deactivation")
    for crm_id in sorted(set(expected) - set(seen)):
        problems.append(f"{crm_id}: missing, but its newest change is active")
    for crm_id in sorted(set(seen) & set(expected)):
        agent, want = seen[crm_id], expected[crm_id]
        got = {
            "crmId": agent["crmId"],
            "username": agent["username"],
            "name": agent["name"],
            "disabled": agent["disabled"],
            "customFields": agent["crm"]["customFields"],
        }
        if got != want:
            problems.append(f"{crm_id}: store has {got}, newest change says {want}")
    return problems


def applied_counts(database_url: str, organization: str) -> tuple[Counter[str], set[str]]:
    """From the provisioning log (tables ``provisioning_message`` and
    ``provisioning_event`` of docs/architecture.md): how many times each notification id
    was applied (action in :data:`APPLIED_ACTIONS`), and every notification id logged."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT e.notification_id, e.action FROM provisioning_event e"
                    " JOIN provisioning_message m ON m.id = e.message_id"
                    " WHERE m.organization_id = :org"
                ),
                {"org": organization},
            ).all()
    finally:
        engine.dispose()
    applied: Counter[str] = Counter()
    logged: set[str] = set()
    for notification_id, action in rows:
        if notification_id is None:
            continue
        logged.add(notification_id)
        if str(action).lower().rsplit(".", 1)[-1] in APPLIED_ACTIONS:
            applied[notification_id] += 1
    return applied, logged
