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
- :func:`load_snapshot` / :func:`revouch`: what a run uses: the digest rows before the
  read (with the username and disabled each recorded; read as their one document,
  ``receiver.reconcile.digest_document``), then under the lock only what no
  longer vouches (agents written since, tombstones, parked users), so a store as the
  last run left it is checked without loading every agent; the same ``(known, roster)``
  as :func:`load_vouched`, which it falls back to when a plan was applied in between.
- :func:`record_digests`: after a plan is applied, in the same transaction, the digest
  rows of the users whose stored state is now exactly what deciding that record wrote
  (see :func:`recordable`), each copying the agent's ``updated_at`` or the tombstone's
  stamp from the store; then the rows' document, selected back from them.

Then deciding such a record again would give ``unchanged`` with nothing written (same
stamp, same agent JSON, same username, no tombstone, nothing parked), which is the row
``sf_metadata.reconcile.plan_users`` gives a :class:`~sf_metadata.reconcile.KnownUser`.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import partial
from itertools import compress
from operator import attrgetter, not_
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

import sf_metadata
from receiver.models import Agent, Tombstone
from receiver.provisioning_tables import ParkedChangeRow
from receiver.reconcile.digest_document import (
    DigestColumns,
    has_document,
    read_document,
    select_columns,
    write_document,
)
from receiver.reconcile.digest_document import plain_rows as _plain_rows
from receiver.reconcile.tables import ReconcileDigest, ReconcilePlanRecord
from sf_metadata.decision import Action, Decision
from sf_metadata.reconcile import Known, PlanRow

__all__ = [
    "SALT",
    "DigestSnapshot",
    "load_digests",
    "load_snapshot",
    "load_vouched",
    "record_digests",
    "recordable",
    "revouch",
]

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
    "reconcile_read.py",
    "reconcile_claims.py",
)
_CHUNK = 500
#: Final actions after which the stored state is what the record decided.
_KEPT_ACTIVE = frozenset({Action.CREATED, Action.UPDATED, Action.RESTORED})
_KEPT_INACTIVE = frozenset({Action.DEPROVISIONED, Action.IGNORED})


def _salt() -> bytes:
    import email_validator

    h = hashlib.blake2b(digest_size=32, person=b"reconcile-v2")
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
_R = ReconcilePlanRecord.__table__  # type: ignore[attr-defined]
#: Each agent with the digest row recorded for its ``updated_at`` (NULLs when none).
_AGENT_DIGEST = _A.outerjoin(
    _D,
    sa.and_(
        _D.c.organization_id == _A.c.organization_id,
        _D.c.crm_id == _A.c.crm_id,
        _D.c.agent_updated_at == _A.c.updated_at,
    ),
)


def load_digests(session: Session, organization_id: str) -> dict[str, str]:
    """Every digest stored for the organization, by crm id (one query of one table): what
    a read may leave unmapped; :func:`load_vouched` says, under the lock, which still
    vouch for their user."""
    statement = sa.select(_D.c.crm_id, _D.c.digest).where(_D.c.organization_id == organization_id)
    return {crm: digest for crm, digest in _plain_rows(session, statement)}


def _tombs_and_parked(session: Session, organization_id: str) -> tuple[list[Any], set[str]]:
    """The organization's tombstones with the digest recorded for their stamp (or
    ``None``), and the crm ids with a parked change: two queries."""
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
    tomb_rows = _plain_rows(session, tombs.where(_T.c.organization_id == organization_id))
    waiting = {
        crm
        for (crm,) in _plain_rows(session, parked.where(_P.c.organization_id == organization_id))
    }
    return tomb_rows, waiting


def load_vouched(
    session: Session, organization_id: str
) -> tuple[dict[str, Known], dict[str, str | None]]:
    """``(known, roster)``: the valid digests (module docstring) by crm id, and every
    agent of the organization (crm id -> username). Three queries, each a scan of one
    table of the organization joined on primary keys: the agents with the digest
    recorded for their ``updated_at``, the tombstones with the digest recorded for their
    stamp, and the users with a parked change."""
    agents = sa.select(_A.c.crm_id, _A.c.username, _D.c.digest, _D.c.disabled).select_from(
        _AGENT_DIGEST
    )
    agent_rows = _plain_rows(session, agents.where(_A.c.organization_id == organization_id))
    tomb_rows, waiting = _tombs_and_parked(session, organization_id)
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


@dataclass(frozen=True)
class DigestSnapshot:
    """The digest rows of an organization as :func:`load_snapshot` found them before a
    read: ``by_digest`` (digest -> crm id: what the read may leave unparsed), ``known``
    (crm id -> the :class:`~sf_metadata.reconcile.Known` each row would give if it still
    vouches), ``agents`` (crm id -> username of the rows recorded for an agent),
    ``tombs`` (the crm ids of the rows recorded for a tombstone alone) and ``marker``
    (the count and newest ``applied_at`` of the organization's applied plans: digest
    rows change only in the transaction that applies a plan, and applied plans are
    never deleted, so an equal marker under the lock means the rows are still these)."""

    by_digest: dict[str, str]
    known: dict[str, Known]
    agents: dict[str, str | None]
    tombs: set[str]
    marker: tuple[Any, ...]

    @property
    def digests(self) -> dict[str, str]:
        """crm id -> digest (as :func:`load_digests` gives them)."""
        return {crm: k.digest for crm, k in self.known.items()}


def _marker(session: Session, organization_id: str) -> tuple[Any, ...]:
    applied = sa.select(sa.func.count(), sa.func.max(_R.c.applied_at)).where(
        _R.c.organization_id == organization_id, _R.c.status == "applied"
    )
    return tuple(_plain_rows(session, applied)[0])


def load_snapshot(session: Session, organization_id: str) -> DigestSnapshot:
    """The organization's digest rows (its document, ``receiver.reconcile.digest_document``,
    or the rows when none was written yet; after the marker's query):
    :class:`DigestSnapshot`."""
    marker = _marker(session, organization_id)  # first: rows as new as it, or newer
    columns = read_document(session, organization_id) or select_columns(session, organization_id)
    return _snapshot(columns, marker)


def _snapshot(columns: DigestColumns, marker: tuple[Any, ...]) -> DigestSnapshot:
    # Set-based (a 50,000-row organization): each Known is a row's last four columns;
    # a tombstone's row has no username and is never disabled (as load_vouched reads it).
    crm_ids, digests, is_agent, usernames, disabled = columns
    by_digest = dict(zip(digests, crm_ids, strict=True))
    known = dict(
        zip(
            crm_ids,
            map(_as_known, zip(digests, is_agent, usernames, disabled, strict=True)),
            strict=True,
        )
    )
    agents = dict(zip(compress(crm_ids, is_agent), compress(usernames, is_agent), strict=True))
    tombs = set(compress(crm_ids, map(not_, is_agent)))
    return DigestSnapshot(by_digest, known, agents, tombs, marker)


_as_known = partial(tuple.__new__, Known)


def revouch(
    session: Session, organization_id: str, snapshot: DigestSnapshot
) -> tuple[dict[str, Known], dict[str, str | None]]:
    """:func:`load_vouched`'s ``(known, roster)``, under the lock, from ``snapshot``
    and what no longer vouches: the agents whose digest row does not hold their
    ``updated_at`` (with their usernames), the tombstones (and whether their digest
    row holds their stamp) and the users with a parked change: three queries that
    return about nothing but the tombstones when the store is as the last run left it.
    The agents vouched for are the snapshot's agent rows less those and less the rows of
    agents deleted since (deprovisioned: a fourth query, only when the count of the
    organization's agents says some are gone); the count then proves the roster is
    every agent. When the marker moved (a plan was applied since the snapshot) or the
    count still differs, :func:`load_vouched`."""
    if _marker(session, organization_id) != snapshot.marker:
        return load_vouched(session, organization_id)
    unvouched = (
        sa.select(_A.c.crm_id, _A.c.username)
        .select_from(_AGENT_DIGEST)
        .where(_A.c.organization_id == organization_id, _D.c.crm_id.is_(None))
    )
    stray: dict[str, str | None] = dict(_plain_rows(session, unvouched))
    count = sa.select(sa.func.count()).where(_A.c.organization_id == organization_id)
    agents = int(_plain_rows(session, count)[0][0])
    # An agent written since: not vouched, username below (the snapshot's own
    # dictionaries are given back when nothing is left out of them: no copy).
    roster = _without(snapshot.agents, stray.keys())
    deleted: set[str] = set()
    if len(roster) + len(stray) != agents:
        # Agents deleted since their digest was recorded (deprovisioned): those rows
        # vouch for nothing. Then the roster is every agent (the count proves it).
        orphans = (
            sa.select(_D.c.crm_id)
            .select_from(
                _D.outerjoin(
                    _A,
                    sa.and_(
                        _A.c.organization_id == _D.c.organization_id,
                        _A.c.crm_id == _D.c.crm_id,
                    ),
                )
            )
            .where(
                _D.c.organization_id == organization_id,
                _D.c.agent_updated_at.is_not(None),
                _A.c.id.is_(None),
            )
        )
        deleted = {crm for (crm,) in _plain_rows(session, orphans)}
        roster = _without(roster, deleted)
        if len(roster) + len(stray) != agents:
            return load_vouched(session, organization_id)
    tomb_rows, waiting = _tombs_and_parked(session, organization_id)
    tombstoned = {crm for crm, _ in tomb_rows}
    vouched_tombs = {crm for crm, digest in tomb_rows if digest is not None}
    # Not vouched: agents written since, agents with a tombstone, parked users, and the
    # tombstone rows whose tombstone moved or that now have an agent.
    gone = stray.keys() | (roster.keys() & tombstoned) | waiting | deleted
    gone |= snapshot.tombs - (vouched_tombs - roster.keys() - stray.keys())
    known = _without(snapshot.known, gone)
    if stray:
        roster = {**roster, **stray}
    return known, roster


_V = TypeVar("_V")


def _without(mapping: dict[str, _V], keys: AbstractSet[str]) -> dict[str, _V]:
    """``mapping`` less ``keys``: itself when it holds none of them, else a copy."""
    drop = keys & mapping.keys()
    if not drop:
        return mapping
    return {key: value for key, value in mapping.items() if key not in drop}


def recordable(
    rows: Sequence[PlanRow], applied: Iterable[Decision], woken: Iterable[Decision]
) -> Iterator[tuple[PlanRow, Decision]]:
    """The rows whose stored state is, once ``applied`` (the decisions written, after the
    store's containment: ``ApplyResult.decisions``) are written, exactly what deciding
    their record wrote: a digest, one row for the user in the read, nothing parked or
    woken for it, and a final decision that created, updated or restored the agent or
    left it as it was (active), or deprovisioned or kept a tombstone (inactive). Each
    with that final decision."""
    candidates = [r for r in rows if r.digest is not None and r.decision is not None]
    if not candidates:  # a read left unparsed (every user vouched for) records nothing
        return
    final = {d.crm_id: d for d in applied if d.crm_id is not None}
    skip: set[str | None] = {d.crm_id for d in woken}
    crms = list(map(_CRM_OF, rows))
    if len(set(crms)) != len(crms):  # users read more than once
        skip |= {crm for crm, n in Counter(crms).items() if n > 1}
    for r in candidates:
        if r.decision is None or r.crm_id in skip:
            continue
        d = final.get(r.crm_id, r.decision) if r.writes else r.decision
        if d.park is None and d.action in (_KEPT_ACTIVE if r.active else _KEPT_INACTIVE):
            yield r, d


_CRM_OF = attrgetter("crm_id")

#: The digest rows, copying the stored agent's ``updated_at`` or tombstone's stamp (so the
#: value recorded is the stored one itself, never a bound value that might compare
#: unequal). Plain SQL with ``?`` placeholders, run through the driver's executemany.
_DELETE = "DELETE FROM reconcile_digest WHERE organization_id = ? AND crm_id = ?"
_COPY = (
    "INSERT INTO reconcile_digest (organization_id, crm_id, digest, agent_updated_at, "
    "system_modstamp, disabled, username) SELECT organization_id, crm_id, ?, {agent_at}, "
    "{stamp}, ?, {username} FROM {table} WHERE organization_id = ? AND crm_id = ?"
)
_COPY_AGENT = _COPY.format(agent_at="updated_at", stamp="NULL", username="username", table="agent")
_COPY_TOMB = _COPY.format(
    agent_at="NULL", stamp="system_modstamp", username="NULL", table="tombstone"
)


def _executemany(session: Session, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """``sql`` (``?`` placeholders) for every row, through the DB-API cursor's
    executemany (no per-row SQLAlchemy processing: the values are text and booleans)."""
    connection = session.connection()
    if connection.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    connection.exec_driver_sql(sql, rows)


def record_digests(
    session: Session,
    organization_id: str,
    rows: Sequence[PlanRow],
    applied: Iterable[Decision],
    woken: Iterable[Decision],
) -> int:
    """Record the digests of :func:`recordable` rows (after the decisions were written, in
    the same transaction): the user's digest row is replaced by one holding the agent's
    ``updated_at`` (active) or the tombstone's stamp (inactive) as stored now; returns
    how many rows were given. Three statements, each run for every row (the delete only
    when the organization has digests already), then the organization's document is
    written from the rows (``receiver.reconcile.digest_document``; also when none was
    written yet and nothing is recorded)."""
    pending = list(recordable(rows, applied, woken))
    if not pending:
        # A store whose rows predate their document gets it at its first applied plan.
        if not has_document(session, organization_id):
            write_document(session, organization_id)
        return 0
    org = organization_id
    any_stored = (
        session.connection()
        .execute(sa.select(_D.c.crm_id).where(_D.c.organization_id == org).limit(1))
        .first()
    )
    if any_stored is not None:
        _executemany(session, _DELETE, [(org, r.crm_id) for r, _ in pending])
    for active, sql in ((True, _COPY_AGENT), (False, _COPY_TOMB)):
        values = [
            (r.digest, bool(r.agent.disabled) if r.agent is not None else False, org, r.crm_id)
            for r, _ in pending
            if r.active is active
        ]
        if values:
            _executemany(session, sql, values)
    write_document(session, org)  # the rows as written: the document is always the rows
    return len(pending)
