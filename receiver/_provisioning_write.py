"""Private helper of ``receiver.provisioning``: write the effects of applied decisions
with set-based statements (bulk insert / update / delete). It decides nothing: every row
and value comes from a decision's effect (``sf_metadata.effects``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col

from receiver.agent_search import insert_agents, reindex_agents
from receiver.db import insert_rows
from receiver.models import Agent, Tombstone
from sf_metadata.decision import Decision
from sf_metadata.effects import UpsertAgent, WriteTombstone

__all__ = ["write_effects"]


def write_effects(
    session: Session, org_id: str, decisions: Sequence[Decision], now: datetime
) -> None:
    """Write the agent and tombstone effects of ``decisions`` (at most one applied
    decision per user; ``now`` is aware UTC, for ``created_at``, ``updated_at`` and
    ``deprovisioned_at``).

    Usernames move between agents within one batch (handovers, swaps, chains), and the
    unique index (organization, username_key) is checked row by row. So: deleted agents
    go first, then every surviving agent that releases a username has it cleared (NULL),
    then the updates and inserts write the final values. The decisions guarantee the final
    usernames do not collide, so no intermediate state can, whatever the order; rows are
    written in the decisions' order."""
    upserts: list[tuple[str, UpsertAgent]] = []
    tombs: list[tuple[str, WriteTombstone]] = []
    for d in decisions:
        if d.crm_id is None:
            continue
        if isinstance(d.effect, UpsertAgent):
            upserts.append((d.crm_id, d.effect))
        elif isinstance(d.effect, WriteTombstone):
            tombs.append((d.crm_id, d.effect))
    deleted = [crm for crm, t in tombs if t.delete_agent]
    if deleted:
        session.exec(
            delete(Agent).where(
                col(Agent.organization_id) == org_id, col(Agent.crm_id).in_(deleted)
            )
        )
    tomb_gone = [crm for crm, u in upserts if u.drop_tombstone]
    if tomb_gone:
        session.exec(
            delete(Tombstone).where(
                col(Tombstone.organization_id) == org_id, col(Tombstone.crm_id).in_(tomb_gone)
            )
        )
    for with_instant in (True, False):
        rows = [
            _tomb_row(org_id, crm, t, now)
            for crm, t in tombs
            if not t.insert and t.deprovisioned is with_instant
        ]
        if rows:
            session.exec(update(Tombstone), params=rows)
    tomb_new = [_tomb_row(org_id, crm, t, now) for crm, t in tombs if t.insert]
    if tomb_new:
        insert_rows(session, Tombstone, tomb_new)
    renamed = [crm for crm, u in upserts if not u.insert and u.released_key is not None]
    if renamed:
        session.exec(
            update(Agent)
            .where(col(Agent.organization_id) == org_id, col(Agent.crm_id).in_(renamed))
            .values(username=None, username_key=None)
        )
    updated = [_agent_row(org_id, crm, u, now) for crm, u in upserts if not u.insert]
    if updated:
        session.exec(update(Agent), params=updated)
        # the renamed ones are among them: their search documents, once, set-based
        reindex_agents(session, [row["id"] for row in updated])
    inserted = [
        {**_agent_row(org_id, crm, u, now), "created_at": now} for crm, u in upserts if u.insert
    ]
    if inserted:
        insert_agents(session, inserted)


def _tomb_row(org_id: str, crm: str, t: WriteTombstone, now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "organization_id": org_id,
        "crm_id": crm,
        "agent_id": t.agent_id,
        "system_modstamp": t.system_modstamp,
        "name": t.name,
    }
    if t.insert or t.deprovisioned:
        row["deprovisioned_at"] = now
    return row


def _agent_row(org_id: str, crm: str, u: UpsertAgent, now: datetime) -> dict[str, Any]:
    return {
        "id": u.agent_id,
        "organization_id": org_id,
        "crm_id": crm,
        "username": u.username,
        "username_key": u.username_key,
        "system_modstamp": u.system_modstamp,
        "data": u.data,
        "updated_at": now,
    }
