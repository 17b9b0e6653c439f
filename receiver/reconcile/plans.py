"""Stored reconcile plans: save, read in full, change status.

A plan's rows are kept as one zlib-compressed JSON document, a column per field (a
50,000-row plan is written in a few list comprehensions)::

    {"v": 2, "actions": [action, ...], "reasons": [reason, ...],
     "c": [crmId, ...], "a": [index in actions, ...], "r": [index in reasons, ...],
     "u": [username, ...],                                   # in read order
     "w": [[row index, SystemModstamp ISO or null, IsActive, agent JSON or null,
            record digest], ...],                            # the rows that write
     "notFound": [{"c": crmId, "u": username}, ...]}        # by crm id

A row's stamp, activity, agent and digest are kept only when its decision writes
something and the plan is not stored as applied (such a row is decided again when the
plan is applied), so an unchanged or applied plan stays small. Plans
stored before (``{"rows": [{"c", "a", "r", "u", "w", ...}]}``) read as they did.
:func:`plan_json` is the ``reconcile show --json``
shape of CONTRACT section 6.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import orjson
from sqlmodel import Session, col, select

from receiver.reconcile.tables import ReconcilePlanRecord
from sf_metadata.effects import UpsertAgent
from sf_metadata.errors import PlanNotFound
from sf_metadata.mapping import AgentRecord
from sf_metadata.reconcile import (
    COUNT_KEYS,
    NotFound,
    PlanRow,
    ReconcileAction,
    ReconcilePlan,
)

__all__ = [
    "CHOSEN",
    "DRY_RUN_NOTE",
    "NOT_FOUND_REASON",
    "PREVIEW_NOTE",
    "STATUSES",
    "StoredPlan",
    "applied_note",
    "decode_rows",
    "encode_rows",
    "get_plan",
    "latest_plan",
    "new_plan_id",
    "plan_json",
    "plan_rows_json",
    "save_plan",
]

STATUSES = ("planned", "held", "applied", "rejected")
NOT_FOUND_REASON = (
    "the read did not return this agent's Salesforce user: never deprovisioned by a run"
)


#: The kind of a plan of chosen users (``reconcile run --user``, the agent page's ``Sync
#: now``); the others are ``full`` and ``incremental`` (``receiver.reconcile.run``).
CHOSEN = "chosen"

#: A plan's note (``detail``) when it was only planned: the feature was disabled, or a
#: dry run (which may add why applying it would be held).
PREVIEW_NOTE = "the feature is disabled: a preview of what enabling will do"
DRY_RUN_NOTE = "dry run"


def applied_note(detail: str | None) -> str | None:
    """The note of a plan once ``reconcile apply`` (or the dashboard's Apply) applied it:
    a note saying it was only planned now says when it was planned; any other is kept."""
    if detail == PREVIEW_NOTE:
        return "planned while the feature was disabled, applied after it was enabled"
    if detail is not None and detail.startswith(DRY_RUN_NOTE):
        return "planned as a dry run, applied afterwards"
    return detail


def new_plan_id() -> str:
    """A new plan id: 12 lowercase hex characters."""
    return uuid.uuid4().hex[:12]


_ACTIONS = tuple(ReconcileAction)
_ACTION_CODE = {a: i for i, a in enumerate(_ACTIONS)}
_CRM, _ACTION, _REASON, _USERNAME = (
    attrgetter(name) for name in ("crm_id", "action", "reason", "username")
)


def _written(r: PlanRow, stamps: dict[datetime, str]) -> list[Any]:
    """``[s, v, g, h]`` of a row that writes (module docstring); ``stamps`` caches one
    ISO text per distinct stamp."""
    effect = r.decision.effect if r.decision is not None else None
    agent: dict[str, Any] | None
    if isinstance(effect, UpsertAgent) and effect.record is r.agent:
        agent = effect.data  # the JSON the decision built
    else:
        agent = r.agent.to_json() if r.agent else None
    stamp = None
    if r.stamp is not None:
        stamp = stamps.get(r.stamp)
        if stamp is None:
            stamp = stamps[r.stamp] = r.stamp.isoformat()
    return [stamp, r.active, agent, r.digest]


def encode_rows(plan: ReconcilePlan, *, applied: bool = False) -> bytes:
    """The compressed rows document of ``plan`` (module docstring); ``applied``: the plan
    is stored as applied, never to be decided again, so ``w`` is left empty."""
    rows = plan.rows
    stamps: dict[datetime, str] = {}
    reason_texts = list(map(_REASON, rows))
    reasons = list(dict.fromkeys(reason_texts))
    index = {reason: i for i, reason in enumerate(reasons)}
    doc = {
        "v": 2,
        "actions": [a.value for a in _ACTIONS],
        "reasons": reasons,
        "c": list(map(_CRM, rows)),
        "a": list(map(_ACTION_CODE.__getitem__, map(_ACTION, rows))),
        "r": list(map(index.__getitem__, reason_texts)),
        "u": list(map(_USERNAME, rows)),
        "w": [] if applied else [[i, *_written(r, stamps)] for i, r in enumerate(rows) if r.writes],
        "notFound": [{"c": n.crm_id, "u": n.username} for n in plan.not_found],
    }
    # Level 1: a 50,000-row plan compresses about as well (its columns repeat) in a
    # fraction of the time of level 6.
    return zlib.compress(orjson.dumps(doc), 1)


def _row(
    crm: str, action: str, reason: str, username: str | None, written: list[Any] | None
) -> PlanRow:
    if written is None:
        return PlanRow(crm, ReconcileAction(action), reason, username)
    stamp, active, agent, digest = written
    return PlanRow(
        crm,
        ReconcileAction(action),
        reason,
        username,
        True,
        datetime.fromisoformat(stamp) if stamp else None,
        bool(active),
        AgentRecord.from_json(agent) if agent else None,
        digest=digest,
    )


def decode_rows(blob: bytes) -> tuple[tuple[PlanRow, ...], tuple[NotFound, ...]]:
    """Inverse of :func:`encode_rows` (and of the one-object-per-row document of plans
    stored before: ``{"rows": [{"c", "a", "r", "u", "w", "s", "v", "g", "h"}, ...]}``)."""
    doc = orjson.loads(zlib.decompress(blob))
    not_found = tuple(NotFound(n["c"], n["u"]) for n in doc["notFound"])
    if doc.get("v") == 2:
        actions, reasons = doc["actions"], doc["reasons"]
        written = {w[0]: w[1:] for w in doc["w"]}
        rows = [
            _row(crm, actions[a], reasons[r], u, written.get(i))
            for i, (crm, a, r, u) in enumerate(
                zip(doc["c"], doc["a"], doc["r"], doc["u"], strict=True)
            )
        ]
        return tuple(rows), not_found
    return tuple(
        _row(
            row["c"],
            row["a"],
            row["r"],
            row["u"],
            [row.get("s"), row.get("v", False), row.get("g"), row.get("h")]
            if row.get("w")
            else None,
        )
        for row in doc["rows"]
    ), not_found


@dataclass(frozen=True)
class StoredPlan:
    """A plan as stored (``record``) with its decoded rows."""

    record: ReconcilePlanRecord
    rows: tuple[PlanRow, ...]
    not_found: tuple[NotFound, ...]

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status


def save_plan(
    session: Session,
    *,
    organization_id: str,
    plan: ReconcilePlan,
    kind: str,
    status: str,
    now: datetime,
    api_calls: int,
    users_read: int,
    agents_before: int,
    watermark: datetime | None,
    hold_reason: str | None = None,
    detail: str | None = None,
    plan_id: str | None = None,
    max_deletions: int = 500,
    created_by: str | None = None,
) -> ReconcilePlanRecord:
    """Insert a plan (flushed, not committed), made by the run ``created_by`` started;
    returns its record."""
    if status not in STATUSES:
        raise ValueError(f"unknown plan status {status!r}")
    record = ReconcilePlanRecord(
        id=plan_id or new_plan_id(),
        organization_id=organization_id,
        created_at=now,
        kind=kind,
        status=status,
        counts=dict(plan.counts),
        hold_reason=hold_reason,
        api_calls=api_calls,
        users_read=users_read,
        agents_before=agents_before,
        max_deletions=max_deletions,
        watermark=watermark,
        detail=detail,
        rows=encode_rows(plan, applied=status == "applied"),
        created_by=created_by[:340] if created_by else None,
    )
    session.add(record)
    session.flush()
    return record


def get_plan(
    session: Session, organization_id: str, plan_id: str, *, for_update: bool = False
) -> StoredPlan:
    """The plan ``plan_id`` of the organization, rows decoded. Raises
    :class:`PlanNotFound` when there is none (another organization's plan is not found)."""
    statement = select(ReconcilePlanRecord).where(
        ReconcilePlanRecord.id == plan_id, ReconcilePlanRecord.organization_id == organization_id
    )
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    record = session.exec(statement).one_or_none()
    if record is None:
        raise PlanNotFound(
            f"organization {organization_id!r} has no reconcile plan {plan_id!r}: "
            f"see the Reconcile page or run `agent-provision reconcile run {organization_id}`"
        )
    rows, not_found = decode_rows(record.rows)
    return StoredPlan(record, rows, not_found)


def latest_plan(session: Session, organization_id: str) -> StoredPlan | None:
    """The organization's newest plan of a full or incremental read, or ``None``: a plan of
    chosen users (:data:`CHOSEN`, an agent page's ``Sync now``) never stands for the
    organization's last reconcile, nor hides a held plan."""
    record = session.exec(
        select(ReconcilePlanRecord)
        .where(
            ReconcilePlanRecord.organization_id == organization_id,
            ReconcilePlanRecord.kind != CHOSEN,
        )
        .order_by(col(ReconcilePlanRecord.created_at).desc())
        .limit(1)
    ).first()
    if record is None:
        return None
    rows, not_found = decode_rows(record.rows)
    return StoredPlan(record, rows, not_found)


def plan_rows_json(plan: StoredPlan) -> Iterator[dict[str, Any]]:
    """``{"crmId", "action", "reason", "username"}`` per row, then each notFound agent."""
    for r in plan.rows:
        yield {
            "crmId": r.crm_id,
            "action": r.action.value,
            "reason": r.reason,
            "username": r.username,
        }
    for n in plan.not_found:
        yield {
            "crmId": n.crm_id,
            "action": "notFound",
            "reason": NOT_FOUND_REASON,
            "username": n.username,
        }


def _counts(counts: Mapping[str, Any] | None) -> dict[str, int]:
    counts = counts or {}
    return {k: int(counts.get(k, 0)) for k in COUNT_KEYS}


def plan_json(plan: StoredPlan) -> dict[str, Any]:
    """``reconcile show --json`` (CONTRACT section 6): ``planId``, ``status``, ``counts``
    (of the plan), ``rows``; plus ``kind``, ``createdAt``, ``apiCalls``, ``holdReason``,
    ``appliedCounts`` (what applying did, once applied), ``detail``, ``createdBy`` (who
    started the run that made it), ``decidedBy`` and ``decidedAt`` (who applied,
    approved or rejected it afterwards, and when; ``None`` until then)."""
    r = plan.record
    return {
        "planId": r.id,
        "status": r.status,
        "counts": _counts(r.counts),
        "rows": list(plan_rows_json(plan)),
        "kind": r.kind,
        "createdAt": r.created_at.isoformat(),
        "apiCalls": r.api_calls,
        "holdReason": r.hold_reason,
        "appliedCounts": _counts(r.applied_counts) if r.applied_counts is not None else None,
        "detail": r.detail,
        "createdBy": r.created_by,
        "decidedBy": r.decided_by,
        "decidedAt": r.decided_at.isoformat() if r.decided_at is not None else None,
    }
