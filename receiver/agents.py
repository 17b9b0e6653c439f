"""Reading provisioned agents (the ``users`` command and ``GET /v2/organizations/{o}/users``).

Deprovisioned agents are not in the ``agent`` table (their tombstones are), so every row
here is a provisioned agent. The list is sorted by ``crmId`` in byte order (CONTRACT
section 4), done in Python: a database collation (PostgreSQL ``en_US``) may not sort
case-sensitively by code point.
"""

from __future__ import annotations

from sqlmodel import Session, select

from receiver.models import Agent
from receiver.organizations import get_organization
from sf_metadata.mapping import AgentRecord

__all__ = ["list_agents"]


def list_agents(session: Session, *, organization_id: str) -> list[AgentRecord]:
    """The organization's agents, by ``crm_id`` in byte order (one query).

    Raises :class:`~sf_metadata.errors.OrganizationNotFound`.
    """
    get_organization(session, organization_id)
    rows = session.exec(
        select(Agent.crm_id, Agent.data).where(Agent.organization_id == organization_id)
    ).all()
    # str order is code point order, which is byte order for the ASCII crm ids
    return [AgentRecord.from_json(data) for _crm, data in sorted(rows, key=lambda r: r[0])]
