"""``agent-provision reconcile run | show | apply | reject`` (CONTRACT section 6).

``run`` reads every User (with ``--user ID``, repeatable, only those: a reconcile of
chosen users, as the agent page's ``Sync now``) with the credentials of CONTRACT section 4
(flags, environment, then the stored connection), shows a progress bar in users on standard error (tqdm;
counts, rate, time left; off when standard error is not a terminal), stores the plan and
applies it unless ``--dry-run``, the feature is disabled or the deletion guard holds it.
Exit codes: 0 applied or planned, 8 held (the plan is printed first), 9 Salesforce could
not be read or reached, 4 unknown / applied / rejected plan; 1 when a reconcile of the
organization is already running (CONTRACT section 4 has no code of its own for it:
"1 otherwise"), with a message saying so and that nothing was read or written.

Tests may put a ``deployer.users.UserReader`` factory in
``CliState.extra["reconcile_reader"]`` (``(organization, credential flags) -> reader``) and
a sleep function in ``CliState.extra["reconcile_sleep"]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import click
from sqlalchemy.engine import Engine

from deployer.users import UserReader
from receiver.cli._credentials import credential_options
from receiver.cli._options import (
    cli_actor,
    database_url_option,
    json_option,
    open_store_for_reading,
    organization_argument,
    settings_from,
    state_from,
    store_engine,
)
from receiver.db import transaction
from receiver.reconcile.plans import NOT_FOUND_REASON
from receiver.reconcile.run import (
    RunResult,
    apply_plan,
    reject_plan,
    show_plan,
)
from sf_metadata.errors import InvalidSalesforceId, JobBusy, ReconcileHeld, UsageError
from sf_metadata.ids import USER, typed_id
from sf_metadata.reconcile import COUNT_KEYS, DEFAULT_GUARD, DeletionGuard
from sf_metadata.soql import MAX_IDS

__all__ = ["TqdmProgress", "make_reader", "reconcile_group"]


class TqdmProgress:
    """A :class:`~receiver.reconcile.run.ProgressSink` drawing a tqdm bar in users."""

    def __init__(self, *, disable: bool | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=None, unit=" users", desc="reading", disable=disable, leave=True)

    def phase(self, name: str) -> None:
        self._bar.set_description(name)

    def total(self, users: int) -> None:
        self._bar.total = users
        self._bar.refresh()

    def advance(self, users: int) -> None:
        self._bar.update(users)

    def close(self) -> None:
        self._bar.close()


def make_reader(
    ctx: click.Context, engine: Engine, organization: str, flags: dict[str, str | None]
) -> UserReader:
    """A :class:`UserReader` logged in with the first complete credential set (flags,
    environment, stored connection: ``receiver.reconcile.jobs.connected_reader``)."""
    factory = state_from(ctx).extra.get("reconcile_reader")
    if callable(factory):
        reader = factory(organization, flags)
        assert isinstance(reader, UserReader)
        return reader
    from receiver.cli._options import secret_key_from
    from receiver.reconcile.jobs import connected_reader

    settings = settings_from(ctx)
    secret = settings.salesforce_client_secret
    reader = connected_reader(
        engine,
        secret_key_from(ctx),
        organization,
        flags,
        os.environ,
        client_id=settings.salesforce_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        warn=lambda line: click.echo(f"warning: {line}", err=True),
    )
    sleep = state_from(ctx).extra.get("reconcile_sleep")
    if callable(sleep):
        reader.sleep = sleep
    return reader


def _print(result: RunResult, as_json: bool, organization: str) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        counts = ", ".join(f"{k} {result.counts.get(k, 0)}" for k in COUNT_KEYS)
        click.echo(f"plan {result.plan_id} {result.status}: {counts}")
        click.echo(f"Salesforce API calls: {result.api_calls}")
        if result.detail:
            click.echo(result.detail)
    if result.status == "held":
        raise ReconcileHeld(
            f"plan {result.plan_id} is held by the deletion guard: {result.hold_reason}; "
            f"nothing was written: read it (`agent-provision reconcile show {organization} "
            f"{result.plan_id}`), then apply it with --approve-deletions or reject it",
            plan_id=result.plan_id,
        )


def run_with_flags(
    ctx: click.Context,
    organization: str,
    flags: dict[str, str | None],
    *,
    dry_run: bool = False,
    guard: DeletionGuard = DEFAULT_GUARD,
    user_ids: Sequence[str] | None = None,
) -> RunResult:
    """Read (every User, or those of ``user_ids``), plan and (unless held, a dry run or
    disabled) apply, with a progress bar, as a reconcile job (another run of the
    organization, anywhere, is refused)."""
    from receiver.organizations import get_organization
    from receiver.reconcile.jobs import run_in_foreground

    with store_engine(ctx, organization) as engine:
        with transaction(engine, read_only=True) as session:
            get_organization(session, organization)  # exit 4 before any login
        progress = TqdmProgress()
        try:
            return run_in_foreground(
                engine,
                organization,
                lambda name: make_reader(ctx, engine, name, flags),
                dry_run=dry_run,
                guard=guard,
                progress=progress,
                user_ids=user_ids,
                actor=cli_actor(),
            )
        except JobBusy as busy:
            job = f" (job {busy.job_id})" if busy.job_id is not None else ""
            raise JobBusy(
                f"a reconcile of {organization} is already running{job}, started by another "
                "command, the dashboard or serve's schedule: this one read and wrote nothing; "
                "wait for it to finish (its progress is on the Reconcile page), then run "
                f"`agent-provision reconcile run {organization}` again if you still need to",
                job_id=busy.job_id,
            ) from None
        finally:
            progress.close()


@click.group("reconcile")
@database_url_option
def reconcile_group() -> None:
    """Read every Salesforce User and bring the agents in line (plan, then apply)."""


@reconcile_group.command("run")
@organization_argument
@click.option("--dry-run", is_flag=True, help="Plan only: nothing is written but the plan.")
@click.option(
    "--max-deletions",
    type=click.IntRange(min=0),
    default=DEFAULT_GUARD.max_deletions,
    show_default=True,
    help="Hold the plan when it would deprovision more agents than this "
    f"(also held above {DEFAULT_GUARD.share:.0%} of the agents once above "
    f"{DEFAULT_GUARD.floor}).",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="ID",
    help=f"Read only this Salesforce User (005..., 15 or 18 characters; repeat for up to "
    f"{MAX_IDS}): a reconcile of chosen users, as the agent page's Sync now.",
)
@credential_options
@json_option
@database_url_option
@click.pass_context
def run_command(
    ctx: click.Context,
    /,
    organization: str,
    dry_run: bool,
    max_deletions: int,
    users: tuple[str, ...],
    as_json: bool,
    **flags: str | None,
) -> None:
    """Plan, then apply unless --dry-run or the deletion guard holds it (exit 8)."""
    guard = DeletionGuard(max_deletions=max_deletions)
    user_ids = _user_ids(users) if users else None
    result = run_with_flags(
        ctx, organization, flags, dry_run=dry_run, guard=guard, user_ids=user_ids
    )
    if user_ids is not None:
        read = sum(n for key, n in result.counts.items() if key != "notFound")
        if read < len(user_ids):
            click.echo(
                f"note: Salesforce returned {read} of the {len(user_ids)} users asked for: an "
                "id it did not return is no user of this org (or was deleted), and nothing "
                "was done for it",
                err=True,
            )
    _print(result, as_json, organization)


def _user_ids(users: Sequence[str]) -> list[str]:
    """``--user`` values as canonical 18-character User ids, each once, in order. Raises
    ``UsageError`` (exit 2) for one that is not a User id, or more than ``MAX_IDS``."""
    ids: dict[str, None] = {}
    for raw in users:
        try:
            ids[typed_id(raw, USER)] = None
        except InvalidSalesforceId:
            raise UsageError(
                f"--user {raw[:40]!r} is not a Salesforce User id (005..., 15 or 18 characters)"
            ) from None
    if len(ids) > MAX_IDS:
        raise UsageError(f"--user takes at most {MAX_IDS} ids per run, not {len(ids)}")
    return list(ids)


@reconcile_group.command("show")
@organization_argument
@click.argument("plan_id")
@json_option
@database_url_option
@click.pass_context
def show_command(ctx: click.Context, organization: str, plan_id: str, as_json: bool) -> None:
    """Print a stored plan: status, counts and every row."""
    engine = open_store_for_reading(ctx, organization)
    try:
        data = show_plan(engine, organization, plan_id)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    counts = ", ".join(f"{k} {data['counts'][k]}" for k in COUNT_KEYS)
    click.echo(f"plan {data['planId']} ({data['kind']}, {data['createdAt']}): {data['status']}")
    click.echo(f"counts: {counts}")
    if data["holdReason"]:
        click.echo(f"held: {data['holdReason']}")
    for row in data["rows"]:
        reason = "" if row["reason"] == NOT_FOUND_REASON else row["reason"]
        click.echo(f"{row['crmId']}  {row['action']:<11}  {row['username'] or '-'}  {reason}")


@reconcile_group.command("apply")
@organization_argument
@click.argument("plan_id")
@click.option("--approve-deletions", is_flag=True, help="Apply a plan held by the deletion guard.")
@json_option
@database_url_option
@click.pass_context
def apply_command(
    ctx: click.Context, organization: str, plan_id: str, approve_deletions: bool, as_json: bool
) -> None:
    """Apply a stored plan (rows whose user changed since are decided again)."""
    with store_engine(ctx, organization) as engine:
        result = apply_plan(
            engine,
            organization,
            plan_id,
            approve_deletions=approve_deletions,
            actor=cli_actor(),
        )
    _print(result, as_json, organization)


@reconcile_group.command("reject")
@organization_argument
@click.argument("plan_id")
@database_url_option
@click.pass_context
def reject_command(ctx: click.Context, organization: str, plan_id: str) -> None:
    """Discard a held plan (nothing is written)."""
    with store_engine(ctx, organization) as engine:
        stored = reject_plan(engine, organization, plan_id, actor=cli_actor())
    click.echo(f"plan {stored.id} rejected: nothing was written")
