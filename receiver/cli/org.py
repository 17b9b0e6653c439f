"""``agent-provision org ...``: register and manage organizations (CONTRACT section 4).

Subcommands: ``add``, ``enable``, ``disable``, ``list``, ``show``, ``update``,
``rotate-token`` and ``url`` (prints only the webhook URL, for scripts and the README).
The webhook URL holds the organization's secret token: it is printed on standard output
on purpose (``add``, ``show``, ``update``, ``rotate-token``, ``url``), never logged.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from receiver.cli._options import (
    cli_actor,
    database_url_option,
    json_option,
    not_registered,
    open_store,
    organization_argument,
    read_session,
    secret_key_from,
    settings_from,
    state_from,
    store_session,
)
from receiver.org_address import DEFAULT_BASE_URL
from sf_metadata.errors import StoreNotFound, UsageError

if TYPE_CHECKING:
    from sqlmodel import Session

    from receiver.models import Organization

__all__ = ["cli_actor", "org"]  # cli_actor: from receiver.cli._options, for the tests


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _summary(org: Organization) -> dict[str, Any]:
    """An organization without its token (for ``org list``)."""
    return {
        "organization": org.id,
        "salesforceOrgId": org.salesforce_org_id,
        "enabled": org.enabled,
        "baseUrl": org.base_url,
    }


@click.group()
@database_url_option
def org() -> None:
    """Register and manage organizations (our id <-> a Salesforce org)."""


@org.command("add")
@organization_argument
@click.option(
    "--salesforce-org-id",
    required=True,
    metavar="ID",
    help="The Salesforce org id (00D..., 15 or 18 characters).",
)
@click.option(
    "--base-url",
    default=DEFAULT_BASE_URL,
    show_default=True,
    metavar="URL",
    help="Where Salesforce reaches this service.",
)
@json_option
@database_url_option
@click.pass_context
def add(
    ctx: click.Context, organization: str, salesforce_org_id: str, base_url: str, as_json: bool
) -> None:
    """Register ORGANIZATION (feature disabled) and print its webhook URL."""
    from receiver.organizations import add_organization, organization_json, webhook_url

    key = secret_key_from(ctx)
    with store_session(ctx, create=True) as session:
        record, token = add_organization(
            session,
            name=organization,
            salesforce_org_id=salesforce_org_id,
            key=key,
            base_url=base_url,
        )
        out = organization_json(record, key, details=False)
        url = webhook_url(record, token)
        notes = _org_id_notes(session, organization, salesforce_org_id)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        _echo_json(out)
    else:
        click.echo(url)
        click.echo(
            f"organization {organization} registered, feature disabled: turn it on "
            f"with `agent-provision org enable {organization}`",
            err=True,
        )


def _org_id_notes(session: Session, organization: str, given: str) -> list[str]:
    """Warnings (never errors) about a Salesforce org id just stored for ``organization``:
    a case-safe suffix that was recomputed, and other organizations registered for the
    same Salesforce org (allowed, e.g. two receivers for one org, but usually a mistake)."""
    from receiver.organizations import list_organizations
    from sf_metadata.ids import same_org_id, to_18

    notes: list[str] = []
    given = given.strip()
    stored = to_18(given)
    if len(given) == 18 and given != stored:
        notes.append(
            f"{given} has a wrong case-safe suffix; stored as {stored} "
            "(the first 15 characters decide)"
        )
    others = sorted(
        o.id
        for o in list_organizations(session)
        if o.id != organization and same_org_id(o.salesforce_org_id, stored)
    )
    if others:
        notes.append(
            f"Salesforce org {stored} is also registered as organization(s) {', '.join(others)}"
        )
    return notes


def _set_enabled(ctx: click.Context, organization: str, enabled: bool) -> None:
    """Through ``receiver.feature_switch.set_feature`` (the dashboard's switch too): the
    flip is audited (actor :func:`cli_actor`) and enabling runs the on-enable actions before
    returning; a failed action is reported on stderr and exits 1. Enabling an organization
    without a Salesforce connection adds a ``note:`` line on stderr (no first reconcile
    ran, as the dashboard's flash says); standard output is the one result line."""
    from receiver.db import transaction
    from receiver.feature_switch import set_feature
    from receiver.salesforce_connection import connection_info

    settings = settings_from(ctx)
    engine = open_store(ctx, organization)
    try:
        result = set_feature(
            engine, settings=settings, organization=organization, enabled=enabled, actor=cli_actor()
        )
        unconnected = False
        if result.changed and result.after:
            with transaction(engine, read_only=True) as session:
                unconnected = connection_info(session, organization) is None
    finally:
        engine.dispose()
    click.echo(f"organization {organization}: {'enabled' if enabled else 'disabled'}")
    if unconnected:
        click.echo(
            f"note: organization {organization} has no Salesforce connection, so no first "
            "reconcile ran: the users that exist already (and what changed while it was off) "
            f"get agents after `agent-provision org connect {organization}` and "
            f"`agent-provision reconcile run {organization}`",
            err=True,
        )
    failed = False
    for outcome in result.actions:
        if outcome.message:
            click.echo(
                outcome.message if outcome.ok else f"error: {outcome.message}", err=not outcome.ok
            )
        failed = failed or not outcome.ok
    if failed:
        ctx.exit(1)


@org.command("enable")
@organization_argument
@database_url_option
@click.pass_context
def enable(ctx: click.Context, organization: str) -> None:
    """Turn agent auto provisioning on for ORGANIZATION.

    With a stored Salesforce connection, a first reconcile runs before this returns, so
    the users that already exist get their agents (a plan held by the deletion guard is
    reported, not applied)."""
    _set_enabled(ctx, organization, True)


@org.command("disable")
@organization_argument
@database_url_option
@click.pass_context
def disable(ctx: click.Context, organization: str) -> None:
    """Turn it off: messages are still acknowledged and logged as ignored."""
    _set_enabled(ctx, organization, False)


@org.command("list")
@json_option
@database_url_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List the organizations (without tokens)."""
    from receiver.organizations import list_organizations

    with read_session(ctx) as session:
        rows = [_summary(o) for o in list_organizations(session)]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no organizations: add one with `agent-provision org add`")
        return
    width = max(len("ORGANIZATION"), *(len(r["organization"]) for r in rows))
    click.echo(f"{'ORGANIZATION':<{width}}  SALESFORCE ORG ID   ENABLED  BASE URL")
    for r in rows:
        click.echo(
            f"{r['organization']:<{width}}  {r['salesforceOrgId']:<18}  "
            f"{'yes' if r['enabled'] else 'no':<7}  {r['baseUrl']}"
        )


@org.command("show")
@organization_argument
@json_option
@database_url_option
@click.pass_context
def show(ctx: click.Context, organization: str, as_json: bool) -> None:
    """Show ORGANIZATION, its webhook URL included."""
    from receiver.organizations import get_organization, organization_json
    from receiver.salesforce_connection import connection_info, connection_json

    with read_session(ctx, organization) as session:
        record = get_organization(session, organization)
        out = organization_json(record, secret_key_from(ctx, create=False), details=True)
        connection = connection_info(session, organization)
    out["salesforceConnection"] = connection_json(connection)
    if as_json:
        _echo_json(out)
        return
    click.echo(f"organization:      {out['organization']}")
    click.echo(f"salesforce org id: {out['salesforceOrgId']}")
    click.echo(f"enabled:           {'yes' if out['enabled'] else 'no'}")
    click.echo(f"base url:          {out['baseUrl']}")
    click.echo(f"created:           {out['createdAt']}")
    click.echo(f"webhook url:       {out['webhookUrl']}")
    if connection is None:
        click.echo("salesforce:        not connected")
    else:
        state = (
            "reconnect: " + (connection.status_reason or "")
            if connection.needs_reconnect
            else "connected"
        )
        click.echo(
            f"salesforce:        {connection.instance_url} as {connection.username} "
            f"({connection.kind}, {state})"
        )


@org.command("url")
@organization_argument
@database_url_option
@click.pass_context
def url(ctx: click.Context, organization: str) -> None:
    """Print only the webhook URL of ORGANIZATION (token included)."""
    from receiver.quick_read import quick_webhook_url
    from receiver.store_probe import SECRET_KEY_ENV, database_url_from

    # the environment as Settings reads it (names are case-insensitive there)
    secret = next((v for k, v in os.environ.items() if k.upper() == SECRET_KEY_ENV and v), None)
    try:
        quick = quick_webhook_url(
            database_url_from(state_from(ctx).database_url), organization, secret
        )
    except StoreNotFound as error:
        raise not_registered(error, organization) from error
    if quick is not None:
        click.echo(quick)
        return
    from receiver.organizations import get_organization, reveal_token, webhook_url

    with read_session(ctx, organization) as session:
        record = get_organization(session, organization)
        out = webhook_url(record, reveal_token(record, secret_key_from(ctx, create=False)))
    click.echo(out)


@org.command("update")
@organization_argument
@click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="New address where Salesforce reaches this service.",
)
@click.option(
    "--salesforce-org-id",
    default=None,
    metavar="ID",
    help="New Salesforce org id (after a sandbox refresh, say).",
)
@database_url_option
@click.pass_context
def update(
    ctx: click.Context, organization: str, base_url: str | None, salesforce_org_id: str | None
) -> None:
    """Change the base URL and/or Salesforce org id of ORGANIZATION (token kept)."""
    if base_url is None and salesforce_org_id is None:
        raise UsageError("org update: give --base-url and/or --salesforce-org-id")
    from receiver.organizations import get_organization, organization_json, update_organization

    with store_session(ctx, organization) as session:
        key = secret_key_from(ctx)
        base_url_before = get_organization(session, organization).base_url
        record = update_organization(
            session, name=organization, base_url=base_url, salesforce_org_id=salesforce_org_id
        )
        out = organization_json(record, key, details=True)
        notes = (
            _org_id_notes(session, organization, salesforce_org_id)
            if salesforce_org_id is not None
            else []
        )
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(out["webhookUrl"])
    if base_url is not None and out["baseUrl"] != base_url_before:
        click.echo(
            f"the webhook URL changed: refresh the Outbound Message endpoint "
            f"(agent-provision deploy {organization})",
            err=True,
        )
    elif base_url is not None:
        click.echo("the base URL is unchanged: the webhook URL stays the same", err=True)


@org.command("rotate-token")
@organization_argument
@database_url_option
@click.pass_context
def rotate(ctx: click.Context, organization: str) -> None:
    """Issue a new token for ORGANIZATION and print the new webhook URL."""
    from receiver.organizations import get_organization, rotate_token, webhook_url

    with store_session(ctx, organization) as session:
        key = secret_key_from(ctx)
        token = rotate_token(session, name=organization, key=key)
        out = webhook_url(get_organization(session, organization), token)
    click.echo(out)
    click.echo(
        f"the old token no longer works: refresh the Outbound Message endpoint "
        f"(agent-provision deploy {organization})",
        err=True,
    )


def _register_connection_commands() -> None:
    from receiver.cli.connection import connect, disconnect

    org.add_command(connect)
    org.add_command(disconnect)


_register_connection_commands()
