"""Deploy and undeploy: the Refresh Webhook operations.

:func:`deploy_package` sends one in-memory zip with rollbackOnError (``checkOnly`` for a
validation), polls checkDeployStatus, and judges success by our components appearing in
``componentSuccesses`` (a "Succeeded" with 0 components happened in the wild, reference
``metadata-deploy-bugs.md`` #1). Deploying one trigger retires the other if we deployed it
before, in the same run: a workflow rule is removed by ``destructiveChangesPost.xml`` in the
flow's own deploy, sent with ignoreWarnings so that a rule already gone is only a warning
(reference ``metadata-deploy-bugs.md`` #5); a flow is deactivated through the Tooling API
just before the rule is deployed (reactivated if that deploy fails or cannot be followed;
left off, and said so, when it times out) and its versions deleted after. After a flow
deploy the Tooling API ``FlowDefinition`` tells whether the flow version is active (a
production org may keep it inactive).

:func:`undeploy` removes what the store recorded: the flow deactivated before it is deleted
(destructive Flow deletes hit known issue W-10538057, reference ``metadata-deploy-bugs.md``
#7, so flow versions are deleted through the Tooling API), then the rule and Outbound
Message by a destructive deploy with ignoreWarnings, so that running it again succeeds.

Nothing here touches the store: results are returned as :class:`DeployOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from deployer._poll import Timing, submit, wait
from deployer.client import OrgApi
from deployer.envelopes import DeployResult
from deployer.flow_versions import (
    deactivate_flow,
    delete_flow_versions,
    flow_definition,
    reactivate_flow,
)
from deployer.kinds import DeploymentKind, DeploymentOutcome
from deployer.package import (
    FLOW,
    OUTBOUND_MESSAGE,
    WORKFLOW_RULE,
    PackageSpec,
    Trigger,
    deploy_components,
    parse_component,
    render_deploy_package,
    render_removal_package,
    zip_package,
)
from sf_metadata.errors import DeployFailed, DeployTimeout, Problem, SalesforceError, Setting

__all__ = [
    "DeployOutcome",
    "Kind",
    "Outcome",
    "Timing",
    "deploy_package",
    "retired_components",
    "undeploy",
]

Kind = DeploymentKind
#: ``unknown``: Salesforce could not be asked how a submitted deploy ended (recorded by
#: the CLI; :func:`deploy_package` never returns it).
Outcome = DeploymentOutcome
OnDeployId = Callable[[str], None]

_WORKFLOW_END = Problem(
    "Workflow Rules reached end of support on December 31, 2025 and this org refused the "
    "rule: deploy the same Outbound Message from a record-triggered flow",
    Setting.TRIGGER,
)


@dataclass(frozen=True)
class DeployOutcome:
    """The result of one deploy / undeploy run, as the store records it.

    ``components`` are ``"Type:FullName"``; ``retired`` the other trigger's components
    removed in the same run; ``problems`` one line each.
    """

    kind: Kind
    trigger: Trigger | None
    api_version: str
    components: tuple[str, ...]
    deploy_id: str | None
    outcome: Outcome
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict for ``--json``."""
        return {
            "kind": self.kind,
            "trigger": self.trigger,
            "apiVersion": self.api_version,
            "components": list(self.components),
            "retired": list(self.retired),
            "deployId": self.deploy_id,
            "outcome": self.outcome,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }

    def raise_for_outcome(self) -> None:
        """Raise :class:`DeployTimeout` (timeout; its ``problems`` carry any further
        problem lines) or :class:`DeployFailed` (failed, inactive-flow, unknown); return for
        ``succeeded``."""
        if self.outcome == "succeeded":
            return
        if self.outcome == "timeout" and self.deploy_id:
            error = DeployTimeout(
                f"deploy {self.deploy_id} did not finish in time: follow it up in Setup > "
                "Deployment Status, then run the command again",
                deploy_id=self.deploy_id,
            )
            # the first problem says the same; the others (a flow left off) must be seen
            error.problems = (error.message, *self.problems[1:])
            raise error
        first = self.problems[0] if self.problems else f"{self.kind} {self.outcome}"
        raise DeployFailed(first, problems=self.problems or None, deploy_id=self.deploy_id)


def retired_components(
    trigger: Trigger, previous: Trigger | None, *, check_only: bool = False
) -> tuple[str, ...]:
    """The components (``"Type:FullName"``) of the other trigger that a deploy of
    ``trigger`` removes, when the store says we deployed ``previous`` before: the rule
    when a flow replaces it, the flow when a rule replaces it; nothing for a validation
    (``check_only``) or the same trigger."""
    if check_only or previous is None or previous == trigger:
        return ()
    ours = deploy_components(trigger)
    return tuple(c for c in deploy_components(previous) if c not in ours)


def _judge(
    result: DeployResult,
    expected: Iterable[str],
    *,
    workflow: bool,
    retiring: Iterable[str] = (),
) -> tuple[Outcome, list[str], list[str]]:
    """``(verdict, problems, warnings)`` for a finished deploy.

    ``retiring`` are components the package deletes: one Salesforce reports as a Warning
    ("No WorkflowRule named … found", reference ``metadata-deploy-bugs.md`` #5) is already
    gone, which is what we wanted. A deploy that did not succeed and names no error gets its
    warnings as problems (Salesforce fails a deploy on a warning without ignoreWarnings).
    """
    problems: list[str] = []
    warned = [m for m in result.component_failures if m.problem_type == "Warning"]
    warnings = [m.describe() for m in warned]
    failures = [m for m in result.component_failures if m.problem_type != "Warning"]
    problems.extend(m.describe() for m in failures)
    if result.error_message:
        code = f"{result.error_status_code}: " if result.error_status_code else ""
        problems.append(f"Deploy {result.deploy_id} failed: {code}{result.error_message}")
    succeeded = {m.component for m in result.component_successes}
    already_gone = {m.component for m in warned} & set(retiring)
    missing = [c for c in expected if c not in succeeded and c not in already_gone]
    if result.status != "Succeeded" or not result.success:
        if not problems and warnings:
            problems.extend(
                f"{line} (Deploy {result.deploy_id} ended {result.status or 'without a status'}"
                " on this warning)"
                for line in warnings
            )
            warnings = []
        if not problems:
            problems.append(
                f"Deploy {result.deploy_id} ended {result.status or 'without a status'} "
                "with no reason given: see Setup > Deployment Status"
            )
    elif missing:
        problems.append(
            f"Deploy {result.deploy_id} succeeded but did not deploy {', '.join(missing)}: "
            "see Setup > Deployment Status"
        )
    if workflow and any(
        m.component_type == "WorkflowRule" or m.component == WORKFLOW_RULE for m in failures
    ):
        problems.append(_WORKFLOW_END)
    return (Outcome.FAILED if problems else Outcome.SUCCEEDED), problems, warnings


def _run(
    client: OrgApi,
    files: dict[str, bytes],
    *,
    check_only: bool,
    ignore_warnings: bool,
    timing: Timing,
    on_deploy_id: OnDeployId | None,
) -> tuple[str, DeployResult | None]:
    deploy_id = submit(
        client, zip_package(files), check_only=check_only, ignore_warnings=ignore_warnings
    )
    if on_deploy_id is not None:
        on_deploy_id(deploy_id)
    return deploy_id, wait(client, deploy_id, timing)


def deploy_package(
    client: OrgApi,
    spec: PackageSpec,
    *,
    check_only: bool = False,
    previous_trigger: Trigger | None = None,
    timing: Timing | None = None,
    on_deploy_id: OnDeployId | None = None,
    on_step: Callable[[str], None] | None = None,
) -> DeployOutcome:
    """Deploy (or validate, ``check_only``) ``spec`` to the org behind ``client``.

    ``previous_trigger`` is the trigger the store says we (may have) deployed before; when
    it differs, the other trigger is retired in the same run (not for ``check_only``): a
    package that retires the rule is sent with ignoreWarnings, so a rule that is already
    gone is a warning (reference ``metadata-deploy-bugs.md`` #5); a flow that is absent is
    simply not deactivated. ``on_deploy_id`` is called with the deploy id as soon as
    Salesforce gives it; ``on_step("checking the flow is active")`` before the flow's
    FlowDefinition is read. Never raises for a failed, timed-out or inactive result (see
    :meth:`DeployOutcome.raise_for_outcome`); failures of the Tooling steps after the deploy
    finished become problems or warnings. Raises :class:`AuthenticationError` /
    :class:`SalesforceError` when Salesforce cannot be used before the deploy finished (a
    flow deactivated for it is reactivated first).
    """
    timing = timing or Timing()
    kind = Kind.CHECK_ONLY if check_only else Kind.DEPLOY
    components = deploy_components(spec.trigger)
    retire = retired_components(spec.trigger, previous_trigger, check_only=check_only)
    # the rule goes in the package's destructiveChangesPost.xml; the flow through Tooling
    spec = replace(spec, retire=tuple(c for c in retire if c != FLOW))
    files = render_deploy_package(spec)
    flow_name = parse_component(FLOW)[1]
    restore: tuple[str, int] | None = None
    if FLOW in retire:
        restore = deactivate_flow(client, flow_name)
    try:
        deploy_id, result = _run(
            client,
            files,
            check_only=check_only,
            ignore_warnings=bool(spec.retire),
            timing=timing,
            on_deploy_id=on_deploy_id,
        )
    except BaseException as exc:
        if restore is not None:
            problem = reactivate_flow(client, restore, flow_name)
            if problem is not None:
                raise SalesforceError(problem) from exc
        raise

    def outcome(
        result_outcome: Outcome, problems: Iterable[str] = (), warnings: Iterable[str] = ()
    ) -> DeployOutcome:
        installed = result_outcome in ("succeeded", "inactive-flow")
        return DeployOutcome(
            kind=kind,
            trigger=spec.trigger,
            api_version=spec.api_version,
            components=components,
            deploy_id=deploy_id,
            outcome=result_outcome,
            problems=tuple(problems),
            warnings=tuple(warnings),
            retired=retire if installed else (),
        )

    if result is None:
        problems = [f"Deploy {deploy_id} did not finish in time"]
        if restore is not None:
            problems.append(
                f"The flow {flow_name} (Flow) was deactivated for this deploy and stays "
                f"inactive while it runs: if deploy {deploy_id} fails, reactivate the flow "
                "in Setup > Flows"
            )
        return outcome(Outcome.TIMEOUT, problems)
    verdict, problems, warnings = _judge(
        result,
        (*components, *(c for c in retire if c != FLOW)),
        workflow=spec.trigger == "workflow",
        retiring=spec.retire,
    )
    if verdict == "failed":
        if restore is not None:
            problem = reactivate_flow(client, restore, flow_name)
            if problem is None:
                warnings.append(f"The flow {flow_name} was reactivated because the deploy failed")
            else:
                problems.append(problem)
        return outcome(Outcome.FAILED, problems, warnings)
    if FLOW in retire:
        try:
            delete_flow_versions(client, flow_name)
        except SalesforceError as exc:
            warnings.append(
                f"The flow {flow_name} (Flow) is inactive but its versions could not be "
                f"deleted ({exc}): delete them in Setup > Flows"
            )
    if spec.trigger == "flow" and not check_only:
        if on_step is not None:
            on_step("checking the flow is active")
        try:
            definition = flow_definition(client, flow_name)
        except SalesforceError as exc:
            warnings.append(
                f"Deploy {deploy_id} succeeded but whether the flow {flow_name} is active "
                f"could not be read (FlowDefinition: {exc}): check it in Setup > Flows"
            )
            return outcome(Outcome.SUCCEEDED, (), warnings)
        active = definition and definition.get("ActiveVersionId")
        latest = definition and definition.get("LatestVersionId")
        if not active or active != latest:
            return outcome(
                Outcome.INACTIVE_FLOW,
                [
                    f"The flow {flow_name} (Flow) deployed but its latest version is not "
                    "active (FlowDefinition.ActiveVersionId): activate it in Setup > Flows, "
                    'or in production enable "Deploy processes and flows as active" in '
                    "Setup > Process Automation Settings and deploy again"
                ],
                warnings,
            )
    return outcome(Outcome.SUCCEEDED, (), warnings)


def undeploy(
    client: OrgApi,
    components: Iterable[str],
    *,
    timing: Timing | None = None,
    on_deploy_id: OnDeployId | None = None,
) -> DeployOutcome:
    """Remove ``components`` (``"Type:FullName"``, what the store recorded) from the org.

    The flow is deactivated, then its versions deleted through the Tooling API; the rule
    and Outbound Message are removed by one destructive deploy with ignoreWarnings, so a
    component that is already gone is a warning, not a failure. Never raises for a failed
    result (see :meth:`DeployOutcome.raise_for_outcome`).
    """
    timing = timing or Timing()
    wanted = sorted(set(components))
    for component in wanted:
        parse_component(component)
    if FLOW in wanted:
        flow_name = parse_component(FLOW)[1]
        deactivate_flow(client, flow_name)
        delete_flow_versions(client, flow_name)
    rest = [c for c in wanted if c != FLOW]
    if not rest:
        return DeployOutcome(
            kind=Kind.UNDEPLOY,
            trigger=None,
            api_version=client.api_version,
            components=tuple(wanted),
            deploy_id=None,
            outcome=Outcome.SUCCEEDED,
        )
    # The rule references the Outbound Message: list both; Salesforce deletes the rule first.
    ordered = sorted(rest, key=lambda c: (c == OUTBOUND_MESSAGE, c))
    files = render_removal_package(ordered, client.api_version)
    deploy_id, result = _run(
        client,
        files,
        check_only=False,
        ignore_warnings=True,
        timing=timing,
        on_deploy_id=on_deploy_id,
    )
    if result is None:
        return DeployOutcome(
            kind=Kind.UNDEPLOY,
            trigger=None,
            api_version=client.api_version,
            components=tuple(wanted),
            deploy_id=deploy_id,
            outcome=Outcome.TIMEOUT,
            problems=(f"Removal deploy {deploy_id} did not finish in time",),
        )
    verdict, problems, warnings = _judge(result, (), workflow=False)
    return DeployOutcome(
        kind=Kind.UNDEPLOY,
        trigger=None,
        api_version=client.api_version,
        components=tuple(wanted),
        deploy_id=deploy_id,
        outcome=verdict,
        problems=tuple(problems),
        warnings=tuple(warnings),
    )
