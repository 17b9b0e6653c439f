"""Index-backed reads of the stored state of one message (issue 11 item 1).

The agents a message names are found by crm id OR username key. Written as one ``OR``
query, both SQLite and PostgreSQL plan it as a search on ``organization_id`` alone (a scan
of every agent of the organization: 25 ms at 20,000 agents, 0.5 s at 1,000,000). Written
as a ``UNION ALL`` of two searches, each arm is served by its own unique index:
``uq_agent_organization_crm_id`` (organization_id, crm_id) and the partial
``uq_agent_organization_username_key`` (organization_id, username_key) WHERE username_key
IS NOT NULL (an ``IN`` list implies NOT NULL on both stores). The cost per message then
depends on the message, not on the store's size. ``tests/receiver/test_state_queries.py``
checks the plans with ``EXPLAIN``.

Rows are plain Core rows (no ORM objects): ``AgentRow`` columns, in this order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import CompoundSelect, Select, select, union_all
from sqlmodel import Session, col

from receiver.models import Agent

__all__ = ["AGENT_COLUMNS", "agents_by_crm_or_username", "agents_lookup"]

#: Columns of the rows :func:`agents_by_crm_or_username` returns, in order.
AGENT_COLUMNS = (
    col(Agent.id),
    col(Agent.crm_id),
    col(Agent.username),
    col(Agent.username_key),
    col(Agent.system_modstamp),
    col(Agent.data),
    col(Agent.created_at),
)


def agents_lookup(
    org_id: str, crm_ids: Collection[str], username_keys: Collection[str]
) -> Select[Any] | CompoundSelect[Any] | None:
    """The statement reading the agents of ``org_id`` whose crm id is in ``crm_ids`` or
    whose username key is in ``username_keys`` (an agent matching both comes twice), or
    ``None`` when both are empty. Parameters are sorted, so one message gives one
    statement text."""
    arms: list[Select[Any]] = []
    if crm_ids:
        arms.append(
            select(*AGENT_COLUMNS).where(
                col(Agent.organization_id) == org_id, col(Agent.crm_id).in_(sorted(crm_ids))
            )
        )
    if username_keys:
        arms.append(
            select(*AGENT_COLUMNS).where(
                col(Agent.organization_id) == org_id,
                col(Agent.username_key).in_(sorted(username_keys)),
            )
        )
    if not arms:
        return None
    if len(arms) == 1:
        return arms[0]
    return union_all(*arms)


def agents_by_crm_or_username(
    session: Session, org_id: str, crm_ids: Collection[str], username_keys: Collection[str]
) -> Sequence[Any]:
    """Rows (:data:`AGENT_COLUMNS`) of the agents of ``org_id`` named by crm id or username
    key, each agent once. Raises what the session raises."""
    statement = agents_lookup(org_id, crm_ids, username_keys)
    if statement is None:
        return []
    seen: set[str] = set()
    rows = []
    for row in session.execute(statement):
        if row[0] not in seen:
            seen.add(row[0])
            rows.append(row)
    return rows
