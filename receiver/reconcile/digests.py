"""What the store vouches for about each user's last applied read (``reconcile_digest``),
so that a run recognises an unchanged user without mapping or deciding it in full.

- :data:`SALT` names the code a digest depends on: the bytes of the mapping and decision
  modules of ``sf_metadata`` and the email-validator and Python versions. Any change to
  them changes every digest, so an old digest never vouches for a new mapping.
- :func:`load_digests`: the digests stored (before the read: what it may leave
  unmapped); :func:`load_vouched`: under the lock, three queries (agents, tombstones,
  parked changes) giving, by crm id, the :class:`~sf_metadata.reconcile.Known` entries
  still valid, and the roster of agents: the digest row's
  ``agent_updated_at`` equals the agent's ``updated_at`` (every agent write sets it, the
  webhook's and reconcile's alike: ``receiver/_provisioning_write.py``) and the user has
  no tombstone; or, for a user with a tombstone alone, the tombstone's SystemModstamp is
  the one recorded; in both cases nothing is parked for the user.
- :func:`record_digests`: after a plan is applied, in the same transaction, one upsert
  of the rows whose stored state is now exactly what deciding that record wrote (see
  :func:`recordable`).

Then deciding such a record again would give ``unchanged`` with nothing written (same
stamp, same agent JSON, same username, no tombstone, nothing parked), which is the row
``sf_metadata.reconcile.plan_users`` gives a :class:`~sf_metadata.reconcile.KnownUser`.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

import sf_metadata
from receiver.models import Agent, Tombstone
from receiver.provisioning_tables import ParkedChangeRow
from receiver.reconcile.tables import ReconcileDigest
from sf_metadata.decision import Action, Decision
from sf_metadata.effects import UpsertAgent, WriteTombstone
from sf_metadata.reconcile import Known, PlanRow

__all__ = ["SALT", "load_digests", "load_vouched", "record_digests", "recordable"]

#: The modules of ``sf_metadata`` whose code a record's mapping and decision depend on.
_SOURCES = (
    "mapping.py",
    "_email.py",
    "ids.py",
    "changes.py",
    "soql.py",
    "decide.py",
    "decision.py",
    "decision_types.py",
    "effects.py",
    "reconcile.py",
)
_CHUNK = 500


def _salt() -> bytes:
    import email_validator

    h = hashlib.blake2b(digest_size=32, person=b"reconcile-v1")
    root = Path(sf_metadata.__file__).parent
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    h.update(f"{email_validator.__version__}\0{sys.version_info[:2]}".encode())
    return h.digest()


#: The key of every record digest (module docstring).
SALT = _salt()

_D = ReconcileDigest.__table__  # type: ignore[attr-defined]
_A = Agent.__table__  # type: ignore[attr-defined]
_T = Tombstone.__table__  # type: ignore[attr-defined]
_P = ParkedChangeRow.__table__  # type: ignore[attr-defined]


def _plain_rows(session: Session, statement: Any) -> list[Any]:
    """The rows of ``statement`` straight from the DB-API cursor: tuples of the driver's
    values, without SQLAlchemy's per-row result objects (a third of the cost for the
    50,000-row reads here). Only for columns whose driver value needs no conversion:
    text, and booleans read with ``bool()`` (SQLite gives 0/1)."""
    result = session.connection().execute(statement)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


def load_digests(session: Session, organization_id: str) -> dict[str, str]:
    """Every digest stored for the organization, by crm id (one query of one table): what
    a read may leave unmapped; :func:`load_vouched` says, under the lock, which still
    vouch for their user."""
    statement = sa.select(_D.c.crm_id, _D.c.digest).where(_D.c.organization_id == organization_id)
    return {crm: digest for crm, digest in _plain_rows(session, statement)}


def load_vouched(
    session: Session, organization_id: str
) -> tuple[dict[str, Known], dict[str, str | None]]:
    """``(known, roster)``: the valid digests (module docstring) by crm id, and every
    agent of the organization (crm id -> username). Three queries, each a scan of one
    table of the organization joined on primary keys: the agents with the digest
    recorded for their ``updated_at``, the tombstones with the digest recorded for their
    stamp, and the users with a parked change."""
    agents = sa.select(_A.c.crm_id, _A.c.username, _D.c.digest, _D.c.disabled).select_from(
        _A.outerjoin(
            _D,
            sa.and_(
                _D.c.organization_id == _A.c.organization_id,
                _D.c.crm_id == _A.c.crm_id,
                _D.c.agent_updated_at == _A.c.updated_at,
            ),
        )
    )
    tombs = sa.select(_T.c.crm_id, _D.c.digest).select_from(
        _T.outerjoin(
            _D,
            sa.and_(
                _D.c.organization_id == _T.c.organization_id,
                _D.c.crm_id == _T.c.crm_id,
                _D.c.agent_updated_at.is_(None),
                _D.c.system_modstamp == _T.c.system_modstamp,
            ),
        )
    )
    parked = sa.select(_P.c.crm_id).distinct()
    agent_rows = _plain_rows(session, agents.where(_A.c.organization_id == organization_id))
    tomb_rows = _plain_rows(session, tombs.where(_T.c.organization_id == organization_id))
    waiting = {
        crm
        for (crm,) in _plain_rows(session, parked.where(_P.c.organization_id == organization_id))
    }
    tombstoned = {crm for crm, _ in tomb_rows}
    known: dict[str, Known] = {}
    roster: dict[str, str | None] = {}
    for crm, username, digest, disabled in agent_rows:
        roster[crm] = username
        if digest is not None and crm not in tombstoned and crm not in waiting:
            known[crm] = Known(digest, True, username, bool(disabled))
    for crm, digest in tomb_rows:
        if digest is not None and crm not in roster and crm not in waiting:
            known[crm] = Known(digest, False, None, False)
    return known, roster


def recordable(
    rows: Sequence[PlanRow], applied: Iterable[Decision], woken: Iterable[Decision]
) -> Iterator[tuple[PlanRow, Decision]]:
    """The rows whose stored state is, once ``applied`` (the decisions written, after the
    store's containment: ``ApplyResult.decisions``) are written, exactly what deciding
    their record wrote: a digest, one row for the user in the read, nothing parked or
    woken for it, and a final decision that created, updated or restored the agent or
    left it as it was (active), or deprovisioned or kept a tombstone (inactive). Each
    with that final decision."""
    final = {d.crm_id: d for d in applied if d.crm_id is not None}
    skip = {d.crm_id for d in woken}
    times: dict[str, int] = {}
    for r in rows:
        times[r.crm_id] = times.get(r.crm_id, 0) + 1
    for r in rows:
        if r.digest is None or r.decision is None or times[r.crm_id] > 1 or r.crm_id in skip:
            continue
        d = final.get(r.crm_id, r.decision) if r.writes else r.decision
        if d.park is not None:
            continue
        if d.action in (Action.CREATED, Action.UPDATED, Action.RESTORED) and r.active:
            yield r, d
        elif d.action in (Action.DEPROVISIONED, Action.IGNORED) and not r.active:
            yield r, d


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _stored(session: Session, table: Any, column: Any, org: str, crm_ids: Sequence[str]) -> Any:
    out: dict[str, Any] = {}
    for batch in _chunks(crm_ids):
        for crm, value in session.connection().execute(
            sa.select(table.c.crm_id, column).where(
                table.c.organization_id == org, table.c.crm_id.in_(batch)
            )
        ):
            out[crm] = value
    return out


def record_digests(
    session: Session,
    organization_id: str,
    rows: Sequence[PlanRow],
    applied: Iterable[Decision],
    woken: Iterable[Decision],
    *,
    written_at: datetime,
) -> int:
    """Upsert the digests of :func:`recordable` rows (``written_at``: the ``now`` the
    decisions were written with, so every agent they wrote has that ``updated_at``);
    returns how many. Rows whose decision wrote nothing get the stored ``updated_at`` or
    tombstone stamp (one query per :data:`_CHUNK` of them)."""
    pending = list(recordable(rows, applied, woken))
    if not pending:
        return 0
    kept_agents = [r.crm_id for r, d in pending if r.active and d.effect is None]
    kept_tombs = [r.crm_id for r, d in pending if not r.active and d.effect is None]
    updated = _stored(session, _A, _A.c.updated_at, organization_id, kept_agents)
    stamps = _stored(session, _T, _T.c.system_modstamp, organization_id, kept_tombs)
    values: list[dict[str, Any]] = []
    for r, d in pending:
        assert r.digest is not None
        agent_at: datetime | None = None
        stamp: datetime | None = None
        if r.active:
            agent_at = written_at if isinstance(d.effect, UpsertAgent) else updated.get(r.crm_id)
            if agent_at is None:
                continue
        else:
            effect = d.effect
            stamp = effect.system_modstamp if isinstance(effect, WriteTombstone) else None
            if effect is None:
                stamp = stamps.get(r.crm_id)
            if stamp is None:
                continue  # a NULL stamp never compares equal: nothing to vouch for
        values.append(
            {
                "organization_id": organization_id,
                "crm_id": r.crm_id,
                "digest": r.digest,
                "agent_updated_at": agent_at,
                "system_modstamp": stamp,
                "disabled": bool(r.agent.disabled) if r.agent is not None else False,
            }
        )
    if values:
        _upsert(session, values)
    return len(values)


def _upsert(session: Session, values: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(_D)
    statement = statement.on_conflict_do_update(
        index_elements=[_D.c.organization_id, _D.c.crm_id],
        set_={
            name: statement.excluded[name]
            for name in ("digest", "agent_updated_at", "system_modstamp", "disabled")
        },
    )
    session.connection().execute(statement, values)
