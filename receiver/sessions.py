"""Agent sessions for the host app (CONTRACT section 3) and the "session ended" hook.

A session id is ``secrets.token_urlsafe(32)``. A session is active until it is ended by
``DELETE /v2/sessions/{id}`` (reason ``"ended"``) or by the deprovisioning of its agent
(reason ``"deprovisioned"``, in the same transaction: reference
``provisioning-pitfalls.md`` B3, and https://docs.tenfold.com/en/agent-auto-provision.html
"the Tenfold session ends").

The host app plugs into :class:`SessionHooks`: callables
``on_session_ended(session_id, agent_crm_id, organization_id, reason)``. They run only after
the transaction that ended the session has committed (never for a rolled-back one) and,
for a transaction of ``receiver.db.transaction``, after the SQLite writer queue was
released (a slow hook never stalls other writers); an exception in a hook is logged, never
raised to the caller.

Session starts and deprovisioning serialize (issue 12, item 5): :func:`start_session` reads
the organization row ``FOR SHARE`` and then the agent row ``FOR SHARE`` (PostgreSQL), the
same order as the webhook (organization row, then agents). A start that comes while a
deprovisioning (or a disable) of its agent is uncommitted waits for it and then finds the
agent gone (404) or disabled (403); a deprovisioning that comes while a start is
uncommitted waits on the agent row, then ends the new session with the others. SQLite
write transactions are serialized by ``BEGIN IMMEDIATE`` already.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, update
from sqlmodel import Session, col, select

from receiver.db import after_transaction
from receiver.models import Agent, AgentSession, Organization
from receiver.organizations import get_organization
from sf_metadata.ids import canonical_id, is_salesforce_id

__all__ = [
    "END_REASON_DEPROVISIONED",
    "END_REASON_ENDED",
    "EndedSession",
    "SessionEndedHook",
    "SessionHooks",
    "SessionStart",
    "StartStatus",
    "end_agent_sessions",
    "end_session",
    "is_session_active",
    "start_session",
]

_log = logging.getLogger("agent_provision.receiver.sessions")

END_REASON_ENDED = "ended"
END_REASON_DEPROVISIONED = "deprovisioned"

#: ``on_session_ended(session_id, agent_crm_id, organization_id, reason)``
SessionEndedHook = Callable[[str, str, str, str], Any]


@dataclass(frozen=True, slots=True)
class EndedSession:
    """A session that a transaction ended (what the hooks hear)."""

    session_id: str
    agent_crm_id: str
    organization_id: str
    reason: str


class SessionHooks:
    """Registry of "session ended" callables; see the module docstring."""

    def __init__(self) -> None:
        self._hooks: list[SessionEndedHook] = []

    def on_session_ended(self, hook: SessionEndedHook) -> SessionEndedHook:
        """Register ``hook`` (usable as a decorator); returns it."""
        self._hooks.append(hook)
        return hook

    def fire(self, ended: Iterable[EndedSession]) -> None:
        """Call every hook for every ended session; a hook's exception is logged (with the
        session id left out) and the next hook still runs."""
        for item in ended:
            for hook in list(self._hooks):
                try:
                    hook(item.session_id, item.agent_crm_id, item.organization_id, item.reason)
                except Exception:
                    _log.exception(
                        "session-ended hook %r failed (organization %s, agent %s)",
                        getattr(hook, "__qualname__", hook),
                        item.organization_id,
                        item.agent_crm_id,
                    )

    def fire_after_commit(self, session: Session, ended: Sequence[EndedSession]) -> None:
        """Fire for ``ended`` once ``session``'s current transaction commits (and, for a
        ``receiver.db.transaction``, once the writer queue is released); drop them if it
        rolls back."""
        if not ended:
            return
        pending = list(ended)
        if after_transaction(session, lambda: self.fire(pending)):
            return
        done = False

        # One-shot flags instead of event.remove(): removing a listener from inside its own
        # after_commit dispatch raises "deque mutated during iteration" (SQLAlchemy 2.0).
        def _after_commit(_session: Any) -> None:
            nonlocal done
            if not done:
                done = True
                self.fire(pending)

        def _after_rollback(_session: Any, _previous: Any = None) -> None:
            nonlocal done
            done = True

        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)


class StartStatus(enum.Enum):
    """Outcome of :func:`start_session`: the route answers 201, 404 or 403."""

    STARTED = "started"
    NOT_PROVISIONED = "not-provisioned"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class SessionStart:
    """``session_id`` is set only when ``status`` is ``STARTED``."""

    status: StartStatus
    session_id: str | None = None


def start_session(
    session: Session, *, organization_id: str, crm_id: str, now: datetime
) -> SessionStart:
    """Start a session for the agent ``crm_id`` (15 or 18 characters) of the organization.

    Returns ``NOT_PROVISIONED`` when no agent has that id (or it is not a User id),
    ``DISABLED`` when the agent is ``disabled`` (inactive or no call center).
    Raises :class:`~sf_metadata.errors.OrganizationNotFound`. Locks as the module docstring
    says (organization row, then agent row, both ``FOR SHARE``).
    """
    organization = session.exec(
        select(Organization.id).where(Organization.id == organization_id).with_for_update(read=True)
    ).first()
    if organization is None:
        get_organization(session, organization_id)  # raises OrganizationNotFound
    if not is_salesforce_id(crm_id, "005"):
        return SessionStart(StartStatus.NOT_PROVISIONED)
    agent = session.exec(
        select(Agent)
        .where(Agent.organization_id == organization_id, Agent.crm_id == canonical_id(crm_id))
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).first()
    if agent is None:
        return SessionStart(StartStatus.NOT_PROVISIONED)
    if agent.data.get("disabled", True):
        return SessionStart(StartStatus.DISABLED)
    session_id = secrets.token_urlsafe(32)
    session.add(
        AgentSession(
            id=session_id,
            organization_id=organization_id,
            agent_id=agent.id,
            crm_id=agent.crm_id,
            started_at=now,
        )
    )
    session.flush()
    return SessionStart(StartStatus.STARTED, session_id)


def is_session_active(session: Session, session_id: str) -> bool:
    """True while the session exists and has not ended."""
    row = session.get(AgentSession, session_id) if isinstance(session_id, str) else None
    return row is not None and row.ended_at is None


def end_session(
    session: Session,
    *,
    session_id: str,
    now: datetime,
    reason: str = END_REASON_ENDED,
    hooks: SessionHooks | None = None,
) -> bool:
    """End one session; False if it does not exist or had already ended. With ``hooks``,
    they hear about it after the caller's commit."""
    row = session.get(AgentSession, session_id) if isinstance(session_id, str) else None
    if row is None or row.ended_at is not None:
        return False
    row.ended_at = now
    row.end_reason = reason
    session.add(row)
    session.flush()
    if hooks is not None:
        hooks.fire_after_commit(
            session, [EndedSession(row.id, row.crm_id, row.organization_id, reason)]
        )
    return True


def end_agent_sessions(
    session: Session,
    *,
    agent_ids: Iterable[str],
    now: datetime,
    reason: str,
) -> list[EndedSession]:
    """End every active session of the given agents (two set-based statements); returns
    the sessions ended, by session id."""
    ids = sorted(set(agent_ids))
    if not ids:
        return []
    active = col(AgentSession.ended_at).is_(None)
    rows = session.exec(
        select(AgentSession.id, AgentSession.crm_id, AgentSession.organization_id)
        .where(col(AgentSession.agent_id).in_(ids), active)
        .order_by(AgentSession.id)
    ).all()
    if not rows:
        return []
    session.exec(
        update(AgentSession)
        .where(col(AgentSession.id).in_([r[0] for r in rows]), active)
        .values(ended_at=now, end_reason=reason)
    )
    return [EndedSession(sid, crm, org, reason) for sid, crm, org in rows]
