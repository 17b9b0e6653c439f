"""Reconcile runs: read every User, plan, store the plan, apply it (CONTRACT section 6).

One function per action, shared by the CLI and the dashboard:

- :func:`read_users`: the Salesforce side (``deployer.users.UserReader``): the org check,
  the custom fields, every page; progress in users (``ProgressSink``). Any failure raises
  before anything is written (an unreadable page is never an absence). A read of every
  User is ``full``, of those changed since the watermark ``incremental``, of chosen ids
  ``chosen`` (the agent page's ``Sync now``, ``reconcile run --user``: it never moves the
  incremental watermark, and no agent counts as ``notFound``).
- :func:`plan_run`: decide against the stored state (``sf_metadata.reconcile``) and store
  the plan: ``planned`` (a dry run, or a disabled organization: a preview of what
  enabling will do), ``held`` (the deletion guard), else applied at once.
- :func:`reconcile`: read, plan and apply in one go.
- :func:`apply_plan`, :func:`reject_plan`, :func:`show_plan` (a stored plan) and
  :class:`RunResult` are ``receiver.reconcile.review``'s, :class:`ProgressSink` and
  :func:`gc_paused` ``receiver.reconcile.progress``'s, exported here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from deployer.pages import read_ahead
from deployer.users import UserReader
from receiver.db import transaction
from receiver.organizations import get_organization
from receiver.reconcile.digests import SALT, DigestSnapshot, load_snapshot
from receiver.reconcile.plans import CHOSEN, DRY_RUN_NOTE, PREVIEW_NOTE, save_plan
from receiver.reconcile.progress import Clock, NoProgress, ProgressSink, gc_paused, utc_now
from receiver.reconcile.review import RunResult, apply_plan, reject_plan, show_plan
from receiver.reconcile.state import load_reconcile_state
from receiver.reconcile.tables import ReconcilePlanRecord
from receiver.sessions import SessionHooks
from sf_metadata.changes import parse_stamp
from sf_metadata.errors import AgentProvisionError
from sf_metadata.reconcile import (
    DEFAULT_GUARD,
    DeletionGuard,
    KnownUser,
    QueriedUser,
    ReadUser,
    plan_users,
    read_page,
)
from sf_metadata.soql import DEFAULT_OVERLAP, user_query

__all__ = [
    "CHOSEN",
    "FULL",
    "INCREMENTAL",
    "ProgressSink",
    "ReadResult",
    "RunResult",
    "apply_plan",
    "gc_paused",
    "last_watermark",
    "plan_run",
    "read_users",
    "reconcile",
    "reject_plan",
    "show_plan",
]

FULL = "full"
INCREMENTAL = "incremental"


#: The SystemModstamp of a record's JSON text as the REST API writes it
#: (``"SystemModstamp":"2026-11-20T10:00:00.000+0000"``): one format, so text order is
#: time order. Only a key is followed by a colon (quotes inside strings are escaped).
_SOQL_STAMP = re.compile(rb'"SystemModstamp"\s*:\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000)"')


_TEXT: Callable[[Any], bytes] = itemgetter(1)  # a match's stamp text


def _stamp_of(record: Mapping[str, Any]) -> datetime | None:
    """The ordering stamp of a record vouched for (decided before, so readable)."""
    texts = {
        name: value
        for name in ("SystemModstamp", "LastModifiedDate")
        if type(value := record.get(name)) is str
    }
    try:
        return parse_stamp(texts)
    except AgentProvisionError:
        return None


@dataclass(frozen=True)
class ReadResult:
    """What a read gave: every User decoded (or vouched for as unchanged), the newest
    stamp among them, the calls made, and whether it was a full read."""

    users: list[ReadUser]
    watermark: datetime | None
    api_calls: int
    kind: str


def read_users(
    reader: UserReader,
    *,
    salesforce_org_id: str,
    since: datetime | None = None,
    progress: ProgressSink | None = None,
    digests: Mapping[str, str] | None = None,
    snapshot: DigestSnapshot | None = None,
    ids: Sequence[str] | None = None,
) -> ReadResult:
    """Read every User (``since`` ``None``), those changed since ``since`` minus the
    overlap (:data:`~sf_metadata.soql.DEFAULT_OVERLAP`), or with ``ids`` (canonical
    18-character User ids, at most :data:`~sf_metadata.soql.MAX_IDS`) only those Users
    (kind :data:`CHOSEN`, no watermark: the others were not read). Each record's JSON text is
    digested as read (``UserReader.raw_pages``); one whose digest is one ``digests``
    (crm id -> digest) or ``snapshot`` holds is kept unparsed and unmapped
    (``sf_metadata.reconcile.read_page``; the plan checks it under the lock). While it
    reads, ``reader.on_wait`` tells ``progress`` of each back-off. Raises
    :class:`~sf_metadata.errors.SalesforceUnreadable` / ``AuthenticationError``."""
    sink = progress or NoProgress()
    sink.phase("reading")
    waits: list[str] = []

    def waiting(text: str) -> None:  # the reader backs off: say why the run stands still
        waits.append(text)
        sink.phase(f"reading, waiting: {text}")

    previous, reader.on_wait = reader.on_wait, waiting
    try:
        reader.check_organization(salesforce_org_id)
        soql = user_query(reader.custom_fields(), since=since, overlap=DEFAULT_OVERLAP, ids=ids)
        users: list[ReadUser] = []
        watermark: datetime | None = None
        first = True
        # digest -> crm id (a digest's text holds the Id: one user per digest)
        known = (
            snapshot.by_digest
            if snapshot is not None
            else {digest: crm for crm, digest in (digests or {}).items()}
        )
        newest_text = b""  # the newest SystemModstamp text of the users left unparsed
        stamp_in = _SOQL_STAMP.search
        for page in read_ahead(reader.raw_pages(soql)):
            if waits:  # answered after a wait: reading again
                waits.clear()
                sink.phase("reading")
            if first:
                sink.total(page.total_size)
                first = False
            read = read_page(page.records, known, SALT, page.parse)
            users += read
            # The page's newest stamp, in passes over it (no loop per record when all are
            # known): the decoded users' own, the known ones' SystemModstamp text.
            stamps: list[datetime] = []
            if len(read) == len(page.records) and set(map(type, read)) == {KnownUser}:
                raws: list[Any] = page.records  # the known users' own records, in order
            else:
                stamps = [
                    u.stamp for u in read if isinstance(u, QueriedUser) and u.stamp is not None
                ]
                raws = [u.raw for u in read if isinstance(u, KnownUser)]
            found = list(map(stamp_in, raws))
            texts = list(map(_TEXT, found)) if None not in found else [m[1] for m in found if m]
            if len(texts) != len(raws):  # another format: read from the parsed record
                stamps += [
                    stamp
                    for raw, m in zip(raws, found, strict=True)
                    if m is None and (stamp := _stamp_of(page.parse(raw))) is not None
                ]
            if texts:
                newest_text = max(newest_text, max(texts))
            if stamps:
                newest = max(stamps)
                watermark = newest if watermark is None or newest > watermark else watermark
            sink.advance(len(page.records))
        if newest_text:
            stamp = _stamp_of({"SystemModstamp": newest_text.decode()})
            if stamp is not None and (watermark is None or stamp > watermark):
                watermark = stamp
    finally:
        reader.on_wait = previous  # the caller's reader, as it was
    if ids is not None:
        return ReadResult(users, None, reader.counter.calls, CHOSEN)
    return ReadResult(
        users, watermark, reader.counter.calls, FULL if since is None else INCREMENTAL
    )


def last_watermark(session: Session, organization_id: str) -> datetime | None:
    """The newest SystemModstamp of an applied plan of the organization (the start of the
    next incremental read), or ``None`` (then the next run is a full one)."""
    return session.exec(
        select(ReconcilePlanRecord.watermark)
        .where(
            ReconcilePlanRecord.organization_id == organization_id,
            ReconcilePlanRecord.status == "applied",
            col(ReconcilePlanRecord.watermark).is_not(None),
        )
        .order_by(col(ReconcilePlanRecord.watermark).desc())
        .limit(1)
    ).first()


def plan_run(
    engine: Engine,
    organization: str,
    read: ReadResult,
    *,
    dry_run: bool = False,
    guard: DeletionGuard = DEFAULT_GUARD,
    progress: ProgressSink | None = None,
    clock: Clock = utc_now,
    hooks: SessionHooks | None = None,
    snapshot: DigestSnapshot | None = None,
    actor: str | None = None,
) -> RunResult:
    """Plan ``read`` against the stored state, store the plan (made by ``actor``: who
    started the run), and apply it unless it is a
    dry run, the feature is disabled (status ``planned``) or the guard holds it
    (``held``: nothing written but the plan); ``snapshot``: the digests the read was
    given (``receiver.reconcile.digests.revouch``). Applying plans and writes in one
    transaction with the organization row locked (as the webhook locks it), so what is
    applied is exactly what was planned against the state it writes over. Raises
    ``OrganizationNotFound``, ``StoreUnavailable``."""
    from receiver.provisioning import lock_organization
    from receiver.reconcile.apply import write_decisions

    sink = progress or NoProgress()
    sink.phase("planning")
    with transaction(engine, read_only=True) as session:
        enabled = get_organization(session, organization).enabled
    preview = dry_run or not enabled
    if not preview:
        # Reported before the write transaction: a sink may write to the store itself.
        sink.phase("applying")
    ended: list[Any] = []
    with transaction(engine, read_only=preview) as session:
        if preview:
            org = get_organization(session, organization)
        else:
            org = lock_organization(session, organization)
            enabled = org.enabled
        state = load_reconcile_state(
            session, org.id, read.users, full=read.kind == FULL, snapshot=snapshot
        )
        previous = last_watermark(session, org.id)
        plan = plan_users(read.users, state)
        hold = guard.hold_reason(plan.counts["deprovision"], state.agent_count)
        detail = None
        if not enabled:
            status, detail = "planned", PREVIEW_NOTE
        elif dry_run:
            status, detail = "planned", DRY_RUN_NOTE
            if hold is not None:
                detail = f"{DRY_RUN_NOTE}; applying it would be held: {hold}"
        elif hold is not None:
            status = "held"
        else:
            status = "applied"
        watermark = read.watermark
        if watermark is None or (previous is not None and previous > watermark):
            watermark = previous
        # A preview's transaction is read-only: its plan is saved in its own, below.
        if not preview:
            record = save_plan(
                session,
                organization_id=org.id,
                plan=plan,
                kind=read.kind,
                status=status,
                now=clock(),
                api_calls=read.api_calls,
                users_read=len(read.users),
                agents_before=state.agent_count,
                watermark=watermark,
                hold_reason=hold if status == "held" else None,
                detail=detail,
                max_deletions=guard.max_deletions,
                created_by=actor,
            )
            if status == "applied":
                ended = write_decisions(
                    session,
                    org,
                    plan,
                    plan_id=record.id,
                    item_count=len(read.users),
                    now=clock(),
                    hooks=hooks,
                )
                record.applied_counts = dict(plan.counts)
                record.applied_at = clock()
                session.add(record)
    if preview:
        with transaction(engine) as session:
            record = save_plan(
                session,
                organization_id=organization,
                plan=plan,
                kind=read.kind,
                status=status,
                now=clock(),
                api_calls=read.api_calls,
                users_read=len(read.users),
                agents_before=state.agent_count,
                watermark=watermark,
                detail=detail,
                max_deletions=guard.max_deletions,
                created_by=actor,
            )
    del ended
    return RunResult(
        record.id, status, dict(plan.counts), read.api_calls, record.hold_reason, detail
    )


def reconcile(
    engine: Engine,
    organization: str,
    reader: UserReader,
    *,
    full: bool = True,
    dry_run: bool = False,
    guard: DeletionGuard = DEFAULT_GUARD,
    progress: ProgressSink | None = None,
    clock: Clock = utc_now,
    hooks: SessionHooks | None = None,
    user_ids: Sequence[str] | None = None,
    actor: str | None = None,
) -> RunResult:
    """One run: read (every User, with ``full=False`` those changed since the last
    applied watermark, a full read when there is none; with ``user_ids`` only those
    Users), plan, store, apply (see :func:`plan_run`; ``actor``: who started it). The one
    function behind
    ``reconcile run``, the Reconcile page's buttons, the agent page's ``Sync now``,
    ``org enable`` and the scheduler."""
    with gc_paused():
        with transaction(engine, read_only=True) as session:
            org = get_organization(session, organization)
            salesforce_org_id = org.salesforce_org_id
            since = None if full or user_ids else last_watermark(session, org.id)
            snapshot = load_snapshot(session, org.id)
        read = read_users(
            reader,
            salesforce_org_id=salesforce_org_id,
            since=since,
            progress=progress,
            snapshot=snapshot,
            ids=user_ids,
        )
        result = plan_run(
            engine,
            organization,
            read,
            dry_run=dry_run,
            guard=guard,
            progress=progress,
            clock=clock,
            hooks=hooks,
            snapshot=snapshot,
            actor=actor,
        )
        # Freed while the collector is paused: resumed, it would first scan every
        # object the run made (a collection of the youngest generation holds all of
        # them), about a tenth of an unchanged run's CPU.
        del read, snapshot
    return result
