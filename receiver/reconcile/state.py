"""Load the stored state a reconcile plan is decided against (one query per table).

A full run loads every agent, tombstone and parked change of the organization (no ``IN``
list: 50,000 ids would pass SQLite's bound-parameter limit); an incremental run loads
those of the users read and the holders of the usernames they claim, in chunks of
:data:`CHUNK` ids. Parked changes (``receiver.provisioning_tables.ParkedChangeRow``:
username collisions waiting for a release) are in the state exactly as the webhook's
``load_stored_state`` gives them (by crm id, oldest row first), so the same decision
forgets the ones a newer change supersedes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import Session, col, select

from receiver.models import Agent, Tombstone
from receiver.provisioning_tables import ParkedChangeRow
from receiver.reconcile.digests import DigestSnapshot, load_vouched, revouch
from sf_metadata.decision import StoredState, StoredUser
from sf_metadata.effects import ParkedChange
from sf_metadata.mapping import username_key
from sf_metadata.reconcile import (
    Known,
    KnownUser,
    QueriedUser,
    ReadUser,
    ReconcileState,
    vouch,
)

__all__ = ["CHUNK", "WHOLE_ABOVE", "agent_count", "load_parked", "load_reconcile_state"]

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


def load_parked(
    session: Session, organization_id: str, crm_ids: Sequence[str] | None
) -> dict[str, tuple[ParkedChange, ...]]:
    """The parked changes of these users (``None``: of every user of the organization),
    by crm id, oldest row first; one query (per :data:`CHUNK` ids)."""
    statement = select(ParkedChangeRow).where(ParkedChangeRow.organization_id == organization_id)
    rows: list[ParkedChangeRow] = []
    if crm_ids is None:
        rows = list(session.exec(statement))
    else:
        for batch in _chunks(crm_ids):
            rows += session.exec(statement.where(col(ParkedChangeRow.crm_id).in_(batch)))
    found: dict[str, list[ParkedChange]] = {}
    for row in sorted(rows, key=lambda r: r.id or 0):
        found.setdefault(row.crm_id, []).append(row.to_change())
    return {crm: tuple(changes) for crm, changes in found.items()}


def agent_count(session: Session, organization_id: str) -> int:
    """Provisioned agents of the organization."""
    return int(
        session.exec(
            select(func.count()).select_from(Agent).where(Agent.organization_id == organization_id)
        ).one()
    )


#: Above this many users to decide, a run loads the whole organization rather than
#: ``IN`` lists of their ids and usernames.
WHOLE_ABOVE = 2000


def load_reconcile_state(
    session: Session,
    organization_id: str,
    users: Sequence[ReadUser],
    *,
    full: bool,
    whole: bool | None = None,
    snapshot: DigestSnapshot | None = None,
) -> ReconcileState:
    """The :class:`~sf_metadata.reconcile.ReconcileState` for ``users`` (see the module
    docstring); ``full`` also makes every agent not read count as ``notFound``.

    ``whole`` (default: a full read where most users are to be decided, or more than
    :data:`WHOLE_ABOVE` of them) loads every agent, tombstone and parked change of the
    organization; otherwise those of the users to decide (the
    :class:`~sf_metadata.reconcile.QueriedUser` ones) and the holders of the usernames
    they claim, plus, for a full read, the roster of every agent (crm id, username) for
    ``notFound``. The valid digests (``receiver.reconcile.digests.load_vouched``, which
    gives that roster too; ``revouch`` from ``snapshot``, the digests the read was
    given) are loaded when ``users`` holds a :class:`~sf_metadata.reconcile.KnownUser`."""
    known: dict[str, Known] = {}
    roster: dict[str, str | None] | None = None
    any_known = any(isinstance(u, KnownUser) for u in users)
    if any_known:
        if snapshot is not None:
            known, roster = revouch(session, organization_id, snapshot)
        else:
            known, roster = load_vouched(session, organization_id)
    # The users plan_users decides in full: those read and mapped, and those read
    # unmapped that the store no longer vouches for (their state is loaded too).
    vouching = vouch(users, known)
    decided = vouching.users
    every_known = vouching.known is not None  # no loop per user then
    decide = [] if every_known else [u for u in decided if type(u) is QueriedUser]
    if whole is None:
        whole = len(decide) > WHOLE_ABOVE or (full and 2 * len(decide) > len(users))
    agents: list[Any] = []
    tombs: list[Any] = []
    crm_ids: list[str] = []
    tomb_columns = (col(Tombstone.crm_id), col(Tombstone.agent_id), col(Tombstone.system_modstamp))
    if whole:
        agents = list(
            session.connection()
            .execute(
                sa.select(*_AGENT_COLUMNS).where(col(Agent.organization_id) == organization_id)
            )
            .all()
        )
        tombs = list(
            session.exec(select(*tomb_columns).where(Tombstone.organization_id == organization_id))
        )
    else:
        crm_ids = sorted({u.crm_id for u in decide if u.crm_id is not None})
        keys = sorted(
            {
                k
                for u in decide
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
    if full and not whole and not any_known:
        known, roster = load_vouched(session, organization_id)
    if whole:
        count = len(agents)
        roster = None  # every agent is in the state
    elif roster is not None:
        count = len(roster)
    else:
        count = agent_count(session, organization_id)
    parked = load_parked(session, organization_id, None if whole else crm_ids)
    state = StoredState(
        stored, holders, frozenset(), organization_id=organization_id, parked=parked
    )
    return ReconcileState(state, full, count, known=known, roster=roster, decided=(users, vouching))
