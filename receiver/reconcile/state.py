"""Load the stored state a reconcile plan is decided against (one query per table).

A full run loads every agent and tombstone of the organization (no ``IN`` list: 50,000
ids would pass SQLite's bound-parameter limit); an incremental run loads those of the
users read and the holders of the usernames they claim, in chunks of
:data:`CHUNK` ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import Session, col, select

from receiver.models import Agent, Tombstone
from sf_metadata.decision import StoredState, StoredUser
from sf_metadata.mapping import username_key
from sf_metadata.reconcile import QueriedUser, ReconcileState

__all__ = ["CHUNK", "agent_count", "load_reconcile_state"]

#: Ids per ``IN (...)`` list (well under SQLite's and PostgreSQL's parameter limits).
CHUNK = 500


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for v in values:
        batch.append(v)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


_AGENT_COLUMNS = (
    col(Agent.crm_id),
    col(Agent.id),
    col(Agent.username),
    col(Agent.username_key),
    col(Agent.system_modstamp),
    col(Agent.data),
)


def agent_count(session: Session, organization_id: str) -> int:
    """Provisioned agents of the organization."""
    return int(
        session.exec(
            select(func.count()).select_from(Agent).where(Agent.organization_id == organization_id)
        ).one()
    )


def load_reconcile_state(
    session: Session, organization_id: str, users: Sequence[QueriedUser], *, full: bool
) -> ReconcileState:
    """The :class:`~sf_metadata.reconcile.ReconcileState` for ``users`` (see the module
    docstring); ``full`` also makes every agent not read count as ``notFound``."""
    agents: list[Any] = []
    tombs: list[Any] = []
    tomb_columns = (col(Tombstone.crm_id), col(Tombstone.agent_id), col(Tombstone.system_modstamp))
    if full:
        agents = list(
            session.connection().execute(
                sa.select(*_AGENT_COLUMNS).where(col(Agent.organization_id) == organization_id)
            )
        )
        tombs = list(
            session.exec(select(*tomb_columns).where(Tombstone.organization_id == organization_id))
        )
    else:
        crm_ids = sorted({u.crm_id for u in users if u.crm_id is not None})
        keys = sorted(
            {
                k
                for u in users
                if u.agent is not None and (k := username_key(u.agent.username)) is not None
            }
        )
        seen: set[str] = set()
        for column, values in ((Agent.crm_id, crm_ids), (Agent.username_key, keys)):
            for batch in _chunks(values):
                for row in session.connection().execute(
                    sa.select(*_AGENT_COLUMNS).where(
                        col(Agent.organization_id) == organization_id, col(column).in_(batch)
                    )
                ):
                    if row[0] not in seen:
                        seen.add(row[0])
                        agents.append(row)
        for batch in _chunks(crm_ids):
            tombs += list(
                session.exec(
                    select(*tomb_columns).where(
                        Tombstone.organization_id == organization_id,
                        col(Tombstone.crm_id).in_(batch),
                    )
                )
            )
    tomb_by_crm = {t[0]: t for t in tombs}
    stored: dict[str, StoredUser] = {}
    holders: dict[str, str] = {}
    for crm, agent_id, username, key, stamp, data in agents:
        stored[crm] = StoredUser(
            crm, agent_id, True, stamp, username, data=data, has_tombstone=crm in tomb_by_crm
        )
        if key is not None:
            holders[key] = crm
    for crm, agent_id, stamp in tombs:
        if crm not in stored:
            stored[crm] = StoredUser(crm, agent_id, False, stamp, None, has_tombstone=True)
    count = len(agents) if full else agent_count(session, organization_id)
    state = StoredState(stored, holders, frozenset(), organization_id=organization_id)
    return ReconcileState(state, full, count)
