"""``agent-provision check | deploy | undeploy`` (CONTRACT section 4): the deployer's CLI.

The store gives the organization's Salesforce org id, webhook URL (token included) and
what was deployed before; ``deployer`` gets plain values and returns results, which are
recorded here in the ``deployment`` table. Salesforce credentials come from flags or the
environment (``deployer.credentials``) and are never printed. A real deploy prints its
deploy id as soon as Salesforce gives it (with ``--json``, on standard error, so standard
output stays one JSON document). When Salesforce cannot be asked how a submitted deploy
ended, the run is recorded with outcome ``unknown`` and the components it carried (so
``undeploy`` removes them) and, with ``--json``, printed before the error. A trigger that a
timed-out or unknown deploy may have installed is retired by the next deploy of the other
trigger. ``--dry-run`` contacts no org, so any valid ``--api-version`` is taken (a flow
still needs 53.0 or later).

Tests may put a ``deployer.deploy.Timing`` in ``CliState.extra["deploy_timing"]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from deployer.client import OrgClient
from deployer.credentials import CREDENTIAL_OPTIONS, resolve_credentials
from deployer.deploy import DeployOutcome, Timing, deploy_package
from deployer.deploy import undeploy as run_undeploy
from deployer.kinds import DeploymentKind, DeploymentOutcome
from deployer.package import (
    PINNED_API_VERSION,
    PackageSpec,
    Trigger,
    deploy_components,
    render_deploy_package,
    validate_api_version,
    write_package,
)
from deployer.preflight import PreflightReport, check_org, choose_api_version, preflight
from deployer.urlcheck import check_webhook_url
from receiver.cli._options import (
    database_url_option,
    json_option,
    secret_key_from,
    state_from,
    store_session,
)
from receiver.deployments import (
    components_to_remove,
    possibly_installed_triggers,
    record_deployment,
)
from receiver.models import DeploymentCreate
from receiver.organizations import get_organization, reveal_token, webhook_url
from sf_metadata.errors import PreflightError, SalesforceError, UsageError

__all__ = ["check", "deploy", "undeploy"]

F = TypeVar("F", bound=Callable[..., Any])

_CREDENTIAL_FLAGS: tuple[tuple[str, str], ...] = (
    ("--instance-url", "existing session: instance URL, such as https://acme.my.salesforce.com"),
    ("--access-token", "existing session: access token or session id (cannot be refreshed)"),
    ("--username", "JWT bearer or SOAP login: the Salesforce username"),
    ("--consumer-key", "JWT bearer or client credentials: the connected app's consumer key"),
    ("--private-key-file", "JWT bearer: PEM private key of the connected app's certificate"),
    ("--consumer-secret", "client credentials: the connected app's consumer secret"),
    (
        "--domain",
        "login (default) or test for JWT/SOAP login; the My Domain (acme.my) for "
        "client credentials",
    ),
    ("--password", "SOAP login (retired from API 65.0): the password"),
    ("--security-token", "SOAP login: the user's security token"),
)


def credential_options(func: F) -> F:
    """The Salesforce credential flags (each falls back to its ``SF_*`` variable)."""
    for flag, text in reversed(_CREDENTIAL_FLAGS):
        dest = flag[2:].replace("-", "_")
        env = CREDENTIAL_OPTIONS[dest]
        func = click.option(flag, dest, default=None, metavar="VALUE", help=f"{text} (env {env}).")(
            func
        )
    return func


def _trigger_option(func: F) -> F:
    return click.option(
        "--trigger",
        type=click.Choice([t.value for t in Trigger]),
        callback=lambda _ctx, _param, value: Trigger(value),
        default="workflow",
        show_default=True,
        help="Workflow Rule (end of support since 2025-12-31) or record-triggered Flow.",
    )(func)


@dataclass(frozen=True)
class _OrgFacts:
    name: str
    salesforce_org_id: str
    webhook_url: str
    installed_triggers: tuple[Trigger, ...]
    recorded_components: list[str]

    def previous_trigger(self, trigger: Trigger) -> Trigger | None:
        """The trigger a deploy of ``trigger`` must treat as deployed before: the other
        one whenever it may be installed (so it is retired), else ``trigger`` or ``None``."""
        others = [t for t in self.installed_triggers if t != trigger]
        if others:
            return others[0]
        return trigger if trigger in self.installed_triggers else None


def _org_facts(ctx: click.Context, organization: str) -> _OrgFacts:
    with store_session(ctx) as session:
        org = get_organization(session, organization)
        url = webhook_url(org, reveal_token(org, secret_key_from(ctx)))
        installed = possibly_installed_triggers(session, org.id)
        return _OrgFacts(
            name=org.id,
            salesforce_org_id=org.salesforce_org_id,
            webhook_url=url,
            installed_triggers=tuple(installed),
            recorded_components=components_to_remove(session, org.id),
        )


def _client(credentials: dict[str, str | None], api_version: str | None) -> OrgClient:
    creds = resolve_credentials(credentials, os.environ)
    version = validate_api_version(api_version) if api_version else PINNED_API_VERSION
    return OrgClient(creds, api_version=version)


def _timing(ctx: click.Context) -> Timing:
    timing = state_from(ctx).extra.get("deploy_timing")
    return timing if isinstance(timing, Timing) else Timing()


def _warn(lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def _record(ctx: click.Context, facts: _OrgFacts, outcome: DeployOutcome) -> None:
    with store_session(ctx) as session:
        record_deployment(
            session,
            DeploymentCreate(
                organization_id=facts.name,
                kind=outcome.kind,
                trigger=outcome.trigger,
                api_version=outcome.api_version,
                components=list(outcome.components),
                deploy_id=outcome.deploy_id,
                outcome=outcome.outcome,
                problems=list(outcome.problems),
            ),
        )


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


def _run_preflight(
    client: OrgClient,
    facts: _OrgFacts,
    trigger: Trigger,
    integration_user: str | None,
    api_version: str | None,
) -> PreflightReport:
    return preflight(
        client,
        expected_org_id=facts.salesforce_org_id,
        webhook_url=facts.webhook_url,
        trigger=trigger,
        integration_user=integration_user,
        api_version=api_version,
    )


@click.command()
@click.argument("organization")
@_trigger_option
@click.option(
    "--integration-user",
    metavar="USERNAME",
    default=None,
    help="The Outbound Message's User to send as (default: the logged-in user).",
)
@click.option(
    "--api-version",
    metavar="V",
    default=None,
    help=f"Metadata API version (default {PINNED_API_VERSION}, capped at the org's).",
)
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
    facts = _org_facts(ctx, organization)
    client = _client(credentials, api_version)
    report = _run_preflight(client, facts, trigger, integration_user, api_version)
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
@click.argument("organization")
@_trigger_option
@click.option("--check-only", is_flag=True, help="Validate only (checkOnly): nothing changes.")
@click.option(
    "--integration-user",
    metavar="USERNAME",
    default=None,
    help="The Outbound Message's User to send as (default: the logged-in user).",
)
@click.option(
    "--api-version",
    metavar="V",
    default=None,
    help=f"Metadata API version (default {PINNED_API_VERSION}, capped at the org's).",
)
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
    help="Directory for --dry-run.",
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
    facts = _org_facts(ctx, organization)
    if dry_run:
        _dry_run(facts, trigger, integration_user, api_version, custom_fields, out, as_json)
        return
    client = _client(credentials, api_version)
    report = _run_preflight(client, facts, trigger, integration_user, api_version)
    _warn(report.warnings)
    if not report.ok:
        if as_json:  # scripts still get one JSON document: nothing was deployed
            click.echo(
                json.dumps(
                    DeployOutcome(
                        kind=DeploymentKind.CHECK_ONLY if check_only else DeploymentKind.DEPLOY,
                        trigger=trigger,
                        api_version=report.api_version,
                        components=(),
                        deploy_id=None,
                        outcome=DeploymentOutcome.FAILED,
                        problems=report.problems,
                        warnings=report.warnings,
                    ).to_json(),
                    indent=2,
                )
            )
        raise PreflightError(report.problems[0], problems=report.problems)
    assert report.integration_user is not None
    spec = PackageSpec(
        trigger=trigger,
        api_version=report.api_version,
        endpoint_url=facts.webhook_url,
        integration_user=report.integration_user,
        custom_fields=tuple(sorted({*report.custom_fields, *custom_fields})),
    )
    seen: list[str] = []
    previous = facts.previous_trigger(trigger)

    def announce(deploy_id: str) -> None:
        seen.append(deploy_id)
        click.echo(f"deploy id: {deploy_id}", err=as_json)

    try:
        outcome = deploy_package(
            client,
            spec,
            check_only=check_only,
            previous_trigger=previous,
            timing=_timing(ctx),
            on_deploy_id=announce,
        )
    except SalesforceError as error:
        if seen:  # submitted: it may have gone through, so record what it carried
            unknown = DeployOutcome(
                kind=DeploymentKind.CHECK_ONLY if check_only else DeploymentKind.DEPLOY,
                trigger=trigger,
                api_version=spec.api_version,
                components=(*deploy_components(trigger), *_retiring(trigger, previous, check_only)),
                deploy_id=seen[0],
                outcome=DeploymentOutcome.UNKNOWN,
                problems=(
                    *error.problems,
                    f"How deploy {seen[0]} ended is unknown: see Setup > Deployment Status",
                ),
            )
            _record(ctx, facts, unknown)
            if as_json:
                click.echo(json.dumps(unknown.to_json(), indent=2))
        raise
    _record(ctx, facts, outcome)
    _print_outcome(outcome, as_json)
    outcome.raise_for_outcome()


def _retiring(trigger: Trigger, previous: Trigger | None, check_only: bool) -> tuple[str, ...]:
    """What :func:`deploy_package` retires when switching from ``previous`` to ``trigger``."""
    if check_only or previous is None or previous == trigger:
        return ()
    ours = deploy_components(trigger)
    return tuple(c for c in deploy_components(previous) if c not in ours)


def _dry_run(
    facts: _OrgFacts,
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
        return
    _warn(warnings)
    for path in written:
        click.echo(str(path))


@click.command()
@click.argument("organization")
@credential_options
@json_option
@database_url_option
@click.pass_context
def undeploy(
    ctx: click.Context, /, organization: str, as_json: bool, **credentials: str | None
) -> None:
    """Remove from the org what deploy created there (re-runnable)."""
    facts = _org_facts(ctx, organization)
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
    client = _client(credentials, None)
    version, _ = choose_api_version(None, client.max_api_version(), Trigger.WORKFLOW)
    client.use_version(version)
    _, _, problems = check_org(client, facts.salesforce_org_id)
    if problems:
        raise PreflightError(problems[0], problems=problems)
    outcome = run_undeploy(
        client,
        facts.recorded_components,
        timing=_timing(ctx),
        on_deploy_id=lambda d: click.echo(f"deploy id: {d}", err=as_json),
    )
    _record(ctx, facts, outcome)
    _print_outcome(outcome, as_json)
    outcome.raise_for_outcome()
