"""``agent-provision replay ORGANIZATION [--user ID] [--from DATE] [--to DATE]
[--source SOURCE] [--again] [--limit N] [--dry-run] [--json]``: decide the failed
notifications of the provisioning log again, after a fix (the log page's ``Replay failed``
button; both call :func:`receiver.replay_batch.replay_failed`).

Each pending failure of the scope (not replayed yet, not overtaken by a later change of its
user; a Salesforce User id; received on or after ``--from`` and on or before ``--to``,
``YYYY-MM-DD`` UTC, swapped with a note when ``--from`` is the later; of one source,
``outbound-message``, ``reconcile`` or ``replay``, as the log page's Source filter) runs
oldest first, at most ``--limit`` (default and most: 500) per call; ``--again`` also takes
those that failed again on an earlier replay; ``--dry-run`` only counts them and lists their
provisioning log event ids. Output: one line, or with ``--json``
``{"organization", "replayed", "actions": {action: count}, "remaining"}`` (dry run:
``{"organization", "pending", "pendingAgain", "eventIds"}``). Exit codes: 0; 2 for a bad
argument or while the organization's feature is off; 4 for an unknown organization; 75
when the store is unavailable (what was replayed stays); 1 while another replay of the
organization runs (CONTRACT section 4's "1 otherwise").
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import click

from receiver.cli._options import (
    cli_actor,
    database_url_option,
    json_option,
    organization_argument,
    store_engine,
)
from receiver.db import transaction
from receiver.organizations import get_organization
from receiver.provisioning import SourceKind
from receiver.replay_batch import MAX_BATCH, ReplayScope, pending_failures, replay_failed
from sf_metadata.errors import InvalidSalesforceId, UsageError
from sf_metadata.ids import USER, typed_id

__all__ = ["replay"]


def _scope(
    user: str | None,
    first: datetime | None,
    last: datetime | None,
    source: str | None,
    again: bool,
) -> ReplayScope:
    crm_id = None
    if user:
        try:
            crm_id = typed_id(user, USER)
        except InvalidSalesforceId:
            raise UsageError(
                f"--user {user[:40]!r} is not a Salesforce User id (005..., 15 or 18 characters)"
            ) from None
    if first is not None and last is not None and first > last:
        click.echo(
            f"note: --from {first.date().isoformat()} is after --to {last.date().isoformat()}: "
            "the dates were swapped",
            err=True,
        )
        first, last = last, first
    since = first.replace(tzinfo=UTC) if first is not None else None
    until = None
    if last is not None and last.date() < date.max:
        until = last.replace(tzinfo=UTC) + timedelta(days=1)
    return ReplayScope(crm_id=crm_id, since=since, until=until, source=source, again=again)


@click.command("replay")
@organization_argument
@click.option("--user", "user", metavar="ID", help="Only this Salesforce User (005...).")
@click.option(
    "--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="Received on or after (UTC)."
)
@click.option(
    "--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Received on or before (UTC)."
)
@click.option(
    "--source",
    type=click.Choice([kind.value for kind in SourceKind]),
    help="Only failures of Outbound Messages, of reconcile runs, or of earlier replays.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_BATCH),
    default=MAX_BATCH,
    show_default=True,
    help="Replay at most this many (oldest first); run again for the rest.",
)
@click.option("--again", is_flag=True, help="Also those that failed again on an earlier replay.")
@click.option("--dry-run", is_flag=True, help="Only count them and list their event ids.")
@json_option
@database_url_option
@click.pass_context
def replay(
    ctx: click.Context,
    organization: str,
    user: str | None,
    first: datetime | None,
    last: datetime | None,
    source: str | None,
    limit: int,
    again: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Decide the failed notifications of ORGANIZATION again, oldest first, once each."""
    scope = _scope(user, first, last, source, again)
    with store_engine(ctx, organization) as engine:
        with transaction(engine, read_only=True) as session:
            get_organization(session, organization)
            found = pending_failures(session, organization_id=organization, scope=scope)
        if dry_run:
            pending = found.batch(again=again)
            if as_json:
                out = {
                    "organization": organization,
                    "pending": len(found.first),
                    "pendingAgain": len(found.again),
                    "eventIds": pending,
                }
                click.echo(json.dumps(out, indent=2))
            else:
                line = f"{len(pending)} failed notification(s) of {organization} to replay"
                if pending:
                    line += f": provisioning log events {', '.join(map(str, pending))}"
                if found.again and not again:
                    line += f" ({len(found.again)} more failed again on a replay: --again)"
                click.echo(line)
            return
        done = replay_failed(
            engine,
            organization=organization,
            scope=scope,
            now=datetime.now(UTC),
            limit=limit,
            actor=cli_actor(),
        )
    if as_json:
        out = {
            "organization": organization,
            "replayed": done.replayed,
            "actions": done.actions,
            "remaining": done.remaining,
        }
        click.echo(json.dumps(out, indent=2))
        return
    actions = ", ".join(f"{a} {n}" for a, n in sorted(done.actions.items())) or "nothing to do"
    line = f"replayed {done.replayed} failed notification(s) of {organization}: {actions}"
    if done.remaining:
        line += f"; {done.remaining} left (run again)"
    click.echo(line)
