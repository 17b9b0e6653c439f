"""The provisioning log: every message that passed the token check, with its outcome, and
every notification of it with its action and reason (CONTRACT section 3).

Written by ``receiver.provisioning`` (applied messages) and by the webhook route
(:func:`record_message` for messages rejected after the token check: body too large, not an
Outbound Message, another org). Read newest first, paged by message id
(:func:`list_messages`); the conditions a view puts on its messages (outcome, source,
received between) are :func:`message_conditions`, shared by the dashboard's log and the
bulk replay's scope. The log never holds a SessionId, a token or field values: only
ids, actions, counts and reasons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Table, insert
from sqlmodel import Session, col, select

from receiver.db import insert_rows
from receiver.models import ProvisioningEvent, ProvisioningMessage
from receiver.outcomes import MessageOutcome
from sf_metadata.decision import Decision

__all__ = [
    "MAX_PAGE_SIZE",
    "LogPage",
    "MessageScope",
    "list_messages",
    "message_conditions",
    "record_events",
    "record_message",
]

MAX_PAGE_SIZE = 500
_MAX_DETAIL = 1000


class MessageScope(Protocol):
    """What :func:`message_conditions` reads of a view: each ``None`` for any."""

    @property
    def outcome(self) -> str | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def since(self) -> datetime | None: ...
    @property
    def until(self) -> datetime | None: ...


def message_conditions(scope: MessageScope) -> list[sa.ColumnElement[bool]]:
    """The ``provisioning_message`` conditions of ``scope``: its ``outcome`` (a
    :class:`~receiver.outcomes.MessageOutcome` value), its ``source`` (``outbound-message``,
    ``reconcile``, ``replay``), received at ``since`` or later and before ``until`` (aware
    UTC datetimes); an empty list for a scope of any message."""
    m = ProvisioningMessage.__table__.c  # type: ignore[attr-defined]
    out: list[sa.ColumnElement[bool]] = []
    if scope.outcome is not None:
        out.append(m.outcome == scope.outcome)
    if scope.source is not None:
        out.append(m.source == scope.source)
    if scope.since is not None:
        out.append(m.received_at >= scope.since)
    if scope.until is not None:
        out.append(m.received_at < scope.until)
    return out


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def record_message(
    session: Session,
    *,
    organization_id: str,
    received_at: datetime,
    outcome: MessageOutcome,
    action_id: str | None = None,
    notification_count: int = 0,
    detail: str | None = None,
    source: str = "outbound-message",
    source_ref: str | None = None,
) -> int:
    """Insert one ``provisioning_message``; returns its id. ``outcome`` is a
    :class:`~receiver.outcomes.MessageOutcome`; ``detail`` one
    sentence (cut at 1000 characters); ``action_id`` is cut at 64 characters. ``source``
    is where the decisions came from (``outbound-message``, ``reconcile``, ``replay``),
    ``source_ref`` the reconcile run or replayed event it names (cut at 64)."""
    row = {
        "organization_id": organization_id,
        "received_at": received_at,
        "action_id": action_id[:64] if action_id else None,
        "outcome": outcome,
        "notification_count": notification_count,
        "detail": detail[:_MAX_DETAIL] if detail else None,
        "source": source[:20],
        "source_ref": source_ref[:64] if source_ref else None,
    }
    # Core INSERT ... RETURNING on the session's connection: no ORM object to track and
    # flush (a millisecond a message on the webhook's path); ORM rows added earlier in
    # the transaction are flushed first, so the order of writes is as before.
    session.flush()
    return int(session.connection().execute(_INSERT_MESSAGE, row).scalar_one())


_MESSAGE_TABLE: Table = ProvisioningMessage.__table__  # type: ignore[attr-defined]
_INSERT_MESSAGE = insert(_MESSAGE_TABLE).returning(_MESSAGE_TABLE.c.id)


def record_events(session: Session, *, message_id: int, decisions: Iterable[Decision]) -> None:
    """Insert one ``provisioning_event`` per decision (one bulk statement)."""
    rows = [
        {
            "message_id": message_id,
            "position": d.index,
            "notification_id": d.notification_id,
            "crm_id": d.crm_id,
            "action": d.action.value,
            "reason": d.reason[:_MAX_DETAIL],
        }
        for d in decisions
    ]
    if rows:
        insert_rows(session, ProvisioningEvent, rows)


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page: ``messages`` newest first; ``next_before_id`` is the ``before_id`` of the
    next page, ``None`` on the last one."""

    messages: list[dict[str, Any]]
    next_before_id: int | None

    def to_json(self) -> dict[str, Any]:
        """``{"messages": [...], "nextBeforeId": int | null}``."""
        return {"messages": self.messages, "nextBeforeId": self.next_before_id}


def list_messages(
    session: Session,
    *,
    organization_id: str,
    limit: int = 50,
    before_id: int | None = None,
) -> LogPage:
    """A page of the organization's log, newest first (two queries). ``limit`` is clamped to
    1..500. Each message is::

        {"id": int, "receivedAt": "2026-...Z", "outcome": str, "actionId": str | null,
         "notificationCount": int, "detail": str | null,
         "notifications": [{"position": int, "notificationId": str | null,
                            "crmId": str | null, "action": str, "reason": str}, ...]}
    """
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    query = select(ProvisioningMessage).where(
        ProvisioningMessage.organization_id == organization_id
    )
    if before_id is not None:
        query = query.where(col(ProvisioningMessage.id) < before_id)
    rows = list(session.exec(query.order_by(col(ProvisioningMessage.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    events: dict[int, list[dict[str, Any]]] = {r.id: [] for r in rows if r.id is not None}
    if events:
        for e in session.exec(
            select(ProvisioningEvent)
            .where(col(ProvisioningEvent.message_id).in_(list(events)))
            .order_by(col(ProvisioningEvent.message_id), col(ProvisioningEvent.position))
        ):
            events[e.message_id].append(
                {
                    "position": e.position,
                    "notificationId": e.notification_id,
                    "crmId": e.crm_id,
                    "action": e.action,
                    "reason": e.reason,
                }
            )
    messages = [
        {
            "id": r.id,
            "receivedAt": _iso(r.received_at),
            "outcome": r.outcome,
            "actionId": r.action_id,
            "notificationCount": r.notification_count,
            "detail": r.detail,
            "notifications": events.get(r.id, []) if r.id is not None else [],
        }
        for r in rows
    ]
    return LogPage(messages, rows[-1].id if more and rows else None)
