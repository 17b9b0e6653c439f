"""``agent-provision check | deploy | undeploy`` (CONTRACT section 4): the deployer's CLI.

Thin commands: the orchestration is ``receiver/refresh.py`` (:func:`run_refresh`, the same
function the dashboard's Refresh button runs), credentials come from
``receiver/salesforce_login.py`` (flags, then the environment, then the organization's
stored connection; never printed). A real deploy prints its deploy id as soon as
Salesforce gives it (with ``--json``, on standard error, so standard output stays one JSON
document); a deploy whose end is unknown is printed (``--json``) before the error.
``--dry-run`` contacts no org, so any valid ``--api-version`` is taken (a flow still needs
53.0 or later); its files are written 0600 because they hold the webhook token.

Tests may put a ``deployer.deploy.Timing`` in ``CliState.extra["deploy_timing"]`` and a
``requests.Session`` in ``CliState.extra["salesforce_http"]`` (a ``retrying_session`` with
no backoff pause, say).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import click
import requests
from sqlalchemy.engine import Engine

from deployer.client import OrgApi
from deployer.deploy import DeployOutcome, Timing
from deployer.package import (
    PINNED_API_VERSION,
    PackageSpec,
    Trigger,
    render_deploy_package,
    write_package,
)
from deployer.preflight import check_org, choose_api_version, preflight
from deployer.urlcheck import check_webhook_url
from receiver.cli._credentials import credential_options
from receiver.cli._options import (
    cli_actor,
    database_url_option,
    json_option,
    organization_argument,
    secret_key_from,
    settings_from,
    state_from,
    store_engine,
)
from receiver.deploy_facts import OrgFacts, org_facts
from receiver.refresh import RefreshRequest, run_refresh, undeploy_webhook
from receiver.salesforce_login import ResolvedClient, salesforce_client
from sf_metadata.errors import PreflightError, UsageError

__all__ = ["check", "deploy", "undeploy"]

#: A Salesforce username has the form of an e-mail address, at most 80 characters
#: (User.Username, https://help.salesforce.com/s/articleView?id=sf.basics_intro_usernames.htm).
_USERNAME = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_USERNAME_MAX = 80


def _trigger_option(func: Any) -> Any:
    return click.option(
        "--trigger",
        type=click.Choice([t.value for t in Trigger]),
        callback=lambda _ctx, _param, value: Trigger(value),
        default=Trigger.FLOW.value,
        show_default=True,
        help="Record-triggered Flow, or Workflow Rule (end of support since 2025-12-31).",
    )(func)


def _integration_user_option(func: Any) -> Any:
    return click.option(
        "--integration-user",
        metavar="USERNAME",
        default=None,
        callback=_check_username,
        help="The Outbound Message's User to send as (default: the logged-in user).",
    )(func)


def _api_version_option(func: Any) -> Any:
    return click.option(
        "--api-version",
        metavar="V",
        default=None,
        help=f"Metadata API version (default {PINNED_API_VERSION}, capped at the org's).",
    )(func)


def _check_username(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > _USERNAME_MAX or not _USERNAME.fullmatch(value):
        raise UsageError(
            f"--integration-user {value!r} is not a Salesforce username: give the user's "
            "Username (the form of an e-mail address, such as integration@acme.com)"
        )
    return value


def _timing(ctx: click.Context) -> Timing:
    timing = state_from(ctx).extra.get("deploy_timing")
    return timing if isinstance(timing, Timing) else Timing()


def _http(ctx: click.Context) -> requests.Session | None:
    http = state_from(ctx).extra.get("salesforce_http")
    return http if isinstance(http, requests.Session) else None


def _warn(lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def _connect(
    ctx: click.Context,
    engine: Engine,
    key: bytes,
    organization: str,
    credentials: dict[str, str | None],
    api_version: str | None,
) -> OrgApi:
    settings = settings_from(ctx)
    secret = settings.salesforce_client_secret
    resolved: ResolvedClient = salesforce_client(
        engine,
        key,
        organization,
        credentials,
        os.environ,
        api_version=api_version,
        client_id=settings.salesforce_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        http=_http(ctx),
    )
    _warn(resolved.warnings)
    return resolved.client


def _print_outcome(outcome: DeployOutcome, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
        return
    _warn(outcome.warnings)
    if outcome.outcome == "succeeded":
        verb = {"check-only": "validated", "deploy": "deployed", "undeploy": "removed"}
        click.echo(
            f"{outcome.kind} succeeded: {verb[outcome.kind]} "
            f"{', '.join(outcome.components) or 'nothing'}"
        )
        if outcome.retired:
            click.echo(f"retired: {', '.join(outcome.retired)}")


@click.command()
@organization_argument
@_trigger_option
@_integration_user_option
@_api_version_option
@credential_options
@json_option
@database_url_option
@click.pass_context
def check(
    ctx: click.Context,
    /,
    organization: str,
    trigger: Trigger,
    integration_user: str | None,
    api_version: str | None,
    as_json: bool,
    **credentials: str | None,
) -> None:
    """Run the deploy preflight against the org of ORGANIZATION; deploy nothing."""
    with store_engine(ctx, organization) as engine:
        key = secret_key_from(ctx)
        facts = org_facts(engine, key, organization)
        client = _connect(ctx, engine, key, organization, credentials, api_version)
    report = preflight(
        client,
        expected_org_id=facts.salesforce_org_id,
        webhook_url=facts.webhook_url,
        trigger=trigger,
        integration_user=integration_user,
        api_version=api_version,
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _warn(report.warnings)
        if report.ok:
            click.echo(
                f"check passed: org {report.salesforce_org_id}, API {report.api_version}, "
                f"integration user {report.integration_user}, trigger {trigger}"
            )
    if not report.ok:
        raise PreflightError(report.problems[0], problems=report.problems)


@click.command()
@organization_argument
@_trigger_option
@click.option("--check-only", is_flag=True, help="Validate only (checkOnly): nothing changes.")
@_integration_user_option
@_api_version_option
@click.option(
    "--custom-field",
    "custom_fields",
    metavar="NAME",
    multiple=True,
    help="A custom User field to send (dry run; a real deploy adds those found).",
)
@click.option("--dry-run", is_flag=True, help="Write the package to --out and contact nobody.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for --dry-run (its files hold the webhook token: written 0600).",
)
@credential_options
@json_option
@database_url_option
@click.pass_context
def deploy(
    ctx: click.Context,
    /,
    organization: str,
    trigger: Trigger,
    check_only: bool,
    integration_user: str | None,
    api_version: str | None,
    custom_fields: tuple[str, ...],
    dry_run: bool,
    out: Path | None,
    as_json: bool,
    **credentials: str | None,
) -> None:
    """Refresh Webhook: deploy the User Outbound Message and its trigger to the org."""
    with store_engine(ctx, organization) as engine:
        key = secret_key_from(ctx)
        if dry_run:
            facts = org_facts(engine, key, organization)
            _dry_run(facts, trigger, integration_user, api_version, custom_fields, out, as_json)
            return
        request = RefreshRequest(
            organization=organization,
            trigger=trigger,
            check_only=check_only,
            integration_user=integration_user,
            api_version=api_version,
            custom_fields=custom_fields,
            actor=cli_actor(),
        )
        run = run_refresh(
            engine,
            key,
            request,
            lambda: _connect(ctx, engine, key, organization, credentials, api_version),
            timing=_timing(ctx),
            on_deploy_id=lambda d: click.echo(f"deploy id: {d}", err=as_json),
        )
    if run.unknown is not None and as_json:
        click.echo(json.dumps(run.unknown.to_json(), indent=2))
    if run.error is not None:
        raise run.error
    assert run.result is not None  # run in this thread: a result or an error
    _print_outcome(run.result.outcome, as_json)
    run.raise_for_outcome()


def _dry_run(
    facts: OrgFacts,
    trigger: Trigger,
    integration_user: str | None,
    api_version: str | None,
    custom_fields: tuple[str, ...],
    out: Path | None,
    as_json: bool,
) -> None:
    problems = []
    if out is None:
        problems.append("--dry-run needs --out DIR (where to write the package)")
    if not integration_user:
        problems.append("--dry-run needs --integration-user USERNAME (nobody is asked)")
    if problems:
        raise UsageError(problems[0], problems=problems)
    assert out is not None and integration_user is not None
    version, version_problems = choose_api_version(api_version, None, trigger)
    if version_problems:
        raise UsageError(version_problems[0], problems=version_problems)
    _, warnings = check_webhook_url(facts.webhook_url, real_deploy=False)
    files = render_deploy_package(
        PackageSpec(
            trigger=trigger,
            api_version=version,
            endpoint_url=facts.webhook_url,
            integration_user=integration_user,
            custom_fields=custom_fields,
        )
    )
    written = write_package(files, out)
    notice = (
        f"the files in {out} hold {facts.name}'s webhook token (in the Outbound Message's "
        "endpoint URL): they are readable by you only (0600); do not commit or share them"
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dryRun": True,
                    "trigger": trigger,
                    "apiVersion": version,
                    "out": str(out),
                    "files": sorted(files),
                    "warnings": warnings,
                },
                indent=2,
            )
        )
        click.echo(f"note: {notice}", err=True)
        return
    _warn(warnings)
    for path in written:
        click.echo(str(path))
    click.echo(f"note: {notice}", err=True)


@click.command()
@organization_argument
@credential_options
@json_option
@database_url_option
@click.pass_context
def undeploy(
    ctx: click.Context, /, organization: str, as_json: bool, **credentials: str | None
) -> None:
    """Remove from the org what deploy created there (re-runnable)."""
    with store_engine(ctx, organization) as engine:
        key = secret_key_from(ctx)
        facts = org_facts(engine, key, organization)
        if not facts.recorded_components:
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "kind": "undeploy",
                            "outcome": "succeeded",
                            "components": [],
                            "deployId": None,
                            "problems": [],
                        }
                    )
                )
            else:
                click.echo(f"nothing to remove: no deploy is recorded for {facts.name}")
            return

        def connect() -> OrgApi:
            client = _connect(ctx, engine, key, organization, credentials, None)
            version, _ = choose_api_version(None, client.max_api_version(), Trigger.WORKFLOW)
            client.use_version(version)
            _, _, problems = check_org(client, facts.salesforce_org_id)
            if problems:
                raise PreflightError(problems[0], problems=problems)
            return client

        outcome = undeploy_webhook(
            engine,
            key,
            organization,
            connect,
            timing=_timing(ctx),
            on_deploy_id=lambda d: click.echo(f"deploy id: {d}", err=as_json),
            actor=cli_actor(),
        )
    _print_outcome(outcome, as_json)
    outcome.raise_for_outcome()
