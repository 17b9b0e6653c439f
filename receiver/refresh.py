"""Refresh Webhook: the one function behind ``agent-provision deploy`` and the dashboard's
Refresh button.

:func:`refresh_webhook` reads what the store knows of the organization
(``receiver.deploy_facts``: its Salesforce org id, the webhook URL with its token, what our
earlier deploys may have left in the org), runs the deployer's preflight and, when it passes, deploys the User Outbound Message and
its trigger; it records the run in the ``deployment`` table (a preflight failure is a job
result, not a deployment). Progress steps (:data:`STEPS`) and the deploy id are recorded
in the job row as they happen (``receiver/jobs.py``), so every worker can show them and a
restart loses nothing.

:func:`run_refresh` runs it as a ``refresh-webhook`` job: at most one per organization at a
time across workers and hosts (:class:`~sf_metadata.errors.JobBusy` otherwise), in the
calling thread (the CLI) or, with ``background=True``, in a daemon thread (the dashboard).

When Salesforce cannot be asked how a submitted deploy ended, the run is recorded with
outcome ``unknown`` and the components it carried (so ``undeploy`` removes them). A
trigger that a timed-out or unknown deploy may have installed is retired by the next
deploy of the other trigger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from deployer.client import OrgApi
from deployer.deploy import DeployOutcome, Timing, deploy_package, retired_components, undeploy
from deployer.kinds import DeploymentKind, DeploymentOutcome
from deployer.package import PackageSpec, Trigger, deploy_components
from deployer.preflight import PreflightReport, preflight
from receiver.deploy_facts import org_facts, record_outcome
from receiver.jobs import JobKind, JobOutcome, Progress, run_job, start_in_background, start_job
from sf_metadata.errors import AgentProvisionError, PreflightError, SalesforceError

if TYPE_CHECKING:
    from receiver.settings import Settings

__all__ = [
    "STEPS",
    "RefreshRequest",
    "RefreshResult",
    "RefreshRun",
    "refresh_webhook",
    "run_refresh",
    "serve_timing",
    "undeploy_webhook",
]

#: The progress steps of a Refresh Webhook, in order (the last only for a flow deploy).
STEPS = ("preflight", "deploying", "waiting for Salesforce", "checking the flow is active")

ConnectFn = Callable[[], OrgApi]


@dataclass(frozen=True)
class RefreshRequest:
    """What to deploy: CONTRACT section 4 ``deploy`` flags (``trigger`` defaults to
    ``flow``; ``integration_user`` to the user the credentials log in as)."""

    organization: str
    trigger: Trigger = Trigger.FLOW
    check_only: bool = False
    integration_user: str | None = None
    api_version: str | None = None
    custom_fields: tuple[str, ...] = ()
    #: who asked (``operator:<username>``, ``cli:<login>@<host>``): the job's ``started_by``
    actor: str | None = None


@dataclass(frozen=True)
class RefreshResult:
    """The preflight report and, when it passed, the deploy outcome."""

    report: PreflightReport
    outcome: DeployOutcome

    @property
    def succeeded(self) -> bool:
        """Preflight passed and the deploy succeeded."""
        return self.report.ok and self.outcome.outcome == DeploymentOutcome.SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        """The deploy outcome's JSON plus ``"preflight"``."""
        return {**self.outcome.to_json(), "preflight": self.report.to_json()}

    def raise_for_outcome(self) -> None:
        """:class:`PreflightError` (exit 5) or the deploy's own error; else return."""
        if not self.report.ok:
            raise PreflightError(self.report.problems[0], problems=self.report.problems)
        self.outcome.raise_for_outcome()


@dataclass
class _Hooks:
    progress: Progress | None
    on_deploy_id: Callable[[str], None] | None
    seen: list[str] = field(default_factory=list)

    def step(self, name: str) -> None:
        if self.progress is not None:
            self.progress.step(name)

    def deploy_id(self, deploy_id: str) -> None:
        self.seen.append(deploy_id)
        if self.progress is not None:
            self.progress.deploy_id(deploy_id)
        self.step("waiting for Salesforce")
        if self.on_deploy_id is not None:
            self.on_deploy_id(deploy_id)


def refresh_webhook(
    engine: Engine,
    key: bytes,
    request: RefreshRequest,
    connect: ConnectFn,
    *,
    progress: Progress | None = None,
    timing: Timing | None = None,
    on_deploy_id: Callable[[str], None] | None = None,
) -> RefreshResult:
    """Preflight, then deploy (see the module docstring). ``connect()`` returns the
    logged-in client (``receiver.salesforce_login.salesforce_client``), called after the
    ``preflight`` step is recorded. ``on_deploy_id`` is told the deploy id as soon as
    Salesforce gives it.

    Returns the result for a preflight failure and for a failed, timed-out or inactive
    deploy (see :meth:`RefreshResult.raise_for_outcome`). Raises
    :class:`~sf_metadata.errors.OrganizationNotFound`, credential errors, and
    :class:`SalesforceError` when Salesforce cannot be used (a submitted deploy is then
    recorded as ``unknown`` first).
    """
    hooks = _Hooks(progress, on_deploy_id)
    facts = org_facts(engine, key, request.organization)
    trigger = request.trigger
    kind = DeploymentKind.CHECK_ONLY if request.check_only else DeploymentKind.DEPLOY
    hooks.step("preflight")
    client = connect()
    report = preflight(
        client,
        expected_org_id=facts.salesforce_org_id,
        webhook_url=facts.webhook_url,
        trigger=trigger,
        integration_user=request.integration_user,
        api_version=request.api_version,
    )
    if not report.ok or report.integration_user is None:
        nothing = DeployOutcome(
            kind=kind,
            trigger=trigger,
            api_version=report.api_version,
            components=(),
            deploy_id=None,
            outcome=DeploymentOutcome.FAILED,
            problems=report.problems,
            warnings=report.warnings,
        )
        return RefreshResult(report, nothing)
    spec = PackageSpec(
        trigger=trigger,
        api_version=report.api_version,
        endpoint_url=facts.webhook_url,
        integration_user=report.integration_user,
        custom_fields=tuple(sorted({*report.custom_fields, *request.custom_fields})),
    )
    previous = facts.previous_trigger(trigger)
    hooks.step("deploying")
    try:
        outcome = deploy_package(
            client,
            spec,
            check_only=request.check_only,
            previous_trigger=previous,
            timing=timing,
            on_deploy_id=hooks.deploy_id,
            on_step=hooks.step,
        )
    except SalesforceError as error:
        if hooks.seen:  # submitted: it may have gone through, so record what it carried
            unknown = DeployOutcome(
                kind=kind,
                trigger=trigger,
                api_version=spec.api_version,
                components=(
                    *deploy_components(trigger),
                    *retired_components(trigger, previous, check_only=request.check_only),
                ),
                deploy_id=hooks.seen[0],
                outcome=DeploymentOutcome.UNKNOWN,
                problems=(
                    *error.problems,
                    f"How deploy {hooks.seen[0]} ended is unknown: see Setup > Deployment Status",
                ),
            )
            record_outcome(engine, facts.name, unknown, facts=facts)
            raise _Unknown(unknown, error) from None
        raise
    outcome = _with_warnings(outcome, report.warnings)
    record_outcome(engine, facts.name, outcome, facts=facts)
    return RefreshResult(report, outcome)


def _with_warnings(outcome: DeployOutcome, warnings: tuple[str, ...]) -> DeployOutcome:
    from dataclasses import replace

    extra = tuple(w for w in warnings if w not in outcome.warnings)
    return replace(outcome, warnings=(*extra, *outcome.warnings)) if extra else outcome


class _Unknown(SalesforceError):
    """A submitted deploy whose end is unknown; carries the recorded outcome."""

    def __init__(self, outcome: DeployOutcome, cause: SalesforceError) -> None:
        super().__init__(cause.message, problems=outcome.problems)
        self.outcome = outcome
        self.cause = cause


def _job_outcome(result: RefreshResult) -> JobOutcome:
    problems = result.outcome.problems if result.report.ok else result.report.problems
    return JobOutcome(result.succeeded, result.to_json(), tuple(problems))


@dataclass
class RefreshRun:
    """What :func:`run_refresh` returns: the job id and, when run in this thread, the
    result (or the error that stopped it, re-raised by :meth:`raise_for_outcome`)."""

    job_id: int
    result: RefreshResult | None = None
    error: AgentProvisionError | None = None
    unknown: DeployOutcome | None = None

    def raise_for_outcome(self) -> None:
        """Re-raise what stopped the run, or the result's own error."""
        if self.error is not None:
            raise self.error
        if self.result is not None:
            self.result.raise_for_outcome()


def run_refresh(
    engine: Engine,
    key: bytes,
    request: RefreshRequest,
    connect: ConnectFn,
    *,
    background: bool = False,
    timing: Timing | None = None,
    on_deploy_id: Callable[[str], None] | None = None,
) -> RefreshRun:
    """:func:`refresh_webhook` as a ``refresh-webhook`` job (see the module docstring).
    Raises :class:`~sf_metadata.errors.JobBusy` when one already runs for the
    organization, and :class:`~sf_metadata.errors.OrganizationNotFound` before starting."""
    org_facts(engine, key, request.organization)  # unknown organization: no job row
    run = RefreshRun(job_id=0)

    def work(progress: Progress) -> JobOutcome:
        try:
            result = refresh_webhook(
                engine,
                key,
                request,
                connect,
                progress=progress,
                timing=timing,
                on_deploy_id=on_deploy_id,
            )
        except _Unknown as unknown:
            run.unknown = unknown.outcome
            run.error = unknown.cause
            return JobOutcome(False, unknown.outcome.to_json(), unknown.outcome.problems)
        except AgentProvisionError as error:
            run.error = error
            raise
        run.result = result
        return _job_outcome(result)

    if background:
        run.job_id = start_in_background(
            engine, request.organization, JobKind.REFRESH_WEBHOOK, work, actor=request.actor
        )
        return run
    progress = start_job(engine, request.organization, JobKind.REFRESH_WEBHOOK, actor=request.actor)
    run.job_id = progress.job_id
    run_job(progress, work)
    return run


def serve_timing(settings: Settings) -> Timing:
    """The deploy polling of a Refresh Webhook started by the CRM page's button or by the
    install on enable (``receiver.webhook_install``): the first wait is ``settings.deploy_poll_seconds`` (default
    1 s), each next one 1.5 times longer, up to 15 s (or the first wait, when longer)."""
    first = settings.deploy_poll_seconds
    return Timing(first_interval=first, max_interval=max(first, Timing.max_interval))


def undeploy_webhook(
    engine: Engine,
    key: bytes,
    organization: str,
    connect: ConnectFn,
    *,
    timing: Timing | None = None,
    on_deploy_id: Callable[[str], None] | None = None,
    actor: str | None = None,
) -> DeployOutcome:
    """Remove what our deploys may have left in the org (the store's record), as a
    ``refresh-webhook`` job started by ``actor`` (never beside a deploy of the same organization), and record
    the run. Raises :class:`~sf_metadata.errors.JobBusy`, and what ``connect`` or the
    removal raise."""
    facts = org_facts(engine, key, organization)
    holder: list[DeployOutcome] = []
    failure: list[AgentProvisionError] = []

    def work(progress: Progress) -> JobOutcome:
        progress.step("preflight")
        try:
            client = connect()
            progress.step("deploying")
            outcome = undeploy(
                client,
                facts.recorded_components,
                timing=timing,
                on_deploy_id=_Hooks(progress, on_deploy_id).deploy_id,
            )
        except AgentProvisionError as error:
            failure.append(error)
            raise
        record_outcome(engine, facts.name, outcome)
        holder.append(outcome)
        succeeded = outcome.outcome == DeploymentOutcome.SUCCEEDED
        return JobOutcome(succeeded, outcome.to_json(), outcome.problems)

    run_job(start_job(engine, organization, JobKind.REFRESH_WEBHOOK, actor=actor), work)
    if failure:
        raise failure[0]
    return holder[0]
