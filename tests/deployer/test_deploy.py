"""deploy_package / undeploy logic with an in-memory org (paths the cassettes do not take:
switching from flow back to workflow, with and without a failed deploy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from deployer.client import OrgApi, OrgClient
from deployer.deploy import Timing, deploy_package, retired_components, undeploy
from deployer.kinds import Trigger
from deployer.package import FLOW, OUTBOUND_MESSAGE, WORKFLOW_RULE, PackageSpec
from sf_metadata.errors import (
    AuthenticationError,
    DeployFailed,
    DeployTimeout,
    SalesforceError,
    Setting,
    setting_of,
)
from tests.deployer.cassette_builder import FLOW_OK, WORKFLOW_OK, failure, status_call, success

WF = "workflows/User.workflow"


class FakeOrg:
    """Answers Tooling queries for one flow and replays checkDeployStatus bodies."""

    def __init__(
        self,
        statuses: list[bytes],
        *,
        flow_active: bool = True,
        flow_exists: bool = True,
        version_found: bool = True,
    ) -> None:
        self.api_version = "62.0"
        self.statuses = statuses
        self.flow_active = flow_active
        self.flow_exists = flow_exists
        self.version_found = version_found
        self.calls: list[tuple[str, Any]] = []
        self.ignore_warnings: list[bool] = []
        #: raised by the named call (``"status"``, ``"delete"``, ``"definition"``)
        self.fail: dict[str, Exception] = {}

    def use_version(self, api_version: str) -> None:
        self.api_version = api_version

    def query(self, soql: str) -> list[dict[str, Any]]:
        raise AssertionError(f"deploy asked a REST query: {soql}")

    def describe(self, sobject: str) -> dict[str, Any]:
        raise AssertionError(f"deploy asked describe {sobject}")

    def userinfo(self) -> dict[str, Any]:
        raise AssertionError("deploy asked userinfo")

    def max_api_version(self) -> str:
        return self.api_version

    def tooling_query(self, soql: str) -> list[dict[str, Any]]:
        self.calls.append(("query", soql.split(" FROM ")[1].split(" ")[0]))
        if (
            "FROM FlowDefinition" in soql
            and "definition" in self.fail
            and any(c[0] == "deploy" for c in self.calls)
        ):
            raise self.fail["definition"]
        if not self.flow_exists:
            return []
        if "FROM FlowDefinition" in soql:
            active = "301A" if self.flow_active else None
            return [{"Id": "300A", "ActiveVersionId": active, "LatestVersionId": "301A"}]
        if "WHERE Id =" in soql:
            return [{"Id": "301A", "VersionNumber": 3}] if self.version_found else []
        return [{"Id": "301A"}]

    def tooling_patch(self, path: str, data: dict[str, Any]) -> None:
        self.calls.append(("patch", data["Metadata"]["activeVersionNumber"]))
        self.flow_active = data["Metadata"]["activeVersionNumber"] != 0

    def tooling_delete(self, path: str) -> bool:
        self.calls.append(("delete", path))
        if "delete" in self.fail:
            raise self.fail["delete"]
        return True

    def metadata_call(self, action: str, render: Callable[[str], bytes]) -> bytes:
        body = render("SESSION").decode()
        if action == "deploy":
            check_only = "<met:checkOnly>true</met:checkOnly>" in body
            self.calls.append(("deploy", "checkOnly" if check_only else "deploy"))
            self.ignore_warnings.append("<met:ignoreWarnings>true</met:ignoreWarnings>" in body)
            return (
                b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
                b'xmlns="http://soap.sforce.com/2006/04/metadata"><e:Body><deployResponse>'
                b"<result><id>0Af1</id></result></deployResponse></e:Body></e:Envelope>"
            )
        if "status" in self.fail:
            raise self.fail["status"]
        return self.statuses.pop(0)


def _status(*args: Any, **kwargs: Any) -> bytes:
    return cast(bytes, status_call(*args, **kwargs)[1]["body"]["string"])


def _spec(trigger: str) -> PackageSpec:
    return PackageSpec(
        trigger=Trigger(trigger),
        api_version="62.0",
        endpoint_url="https://hooks.example.com/w?token=t",
        integration_user="i@example.com",
    )


def _client(org: FakeOrg) -> OrgApi:
    return org  # FakeOrg is checked against the OrgApi Protocol here (mypy on tests/)


def test_flow_to_workflow_deactivates_first_and_deletes_after() -> None:
    org = FakeOrg([_status("Succeeded", done=True, ok=True, details=WORKFLOW_OK)])
    outcome = deploy_package(_client(org), _spec("workflow"), previous_trigger=Trigger.FLOW)
    assert outcome.outcome == "succeeded"
    assert outcome.retired == (FLOW,)
    kinds = [c[0] for c in org.calls]
    assert kinds.index("patch") < kinds.index("deploy") < kinds.index("delete")
    assert ("patch", 0) in org.calls


def test_flow_to_workflow_failure_reactivates_the_flow() -> None:
    org = FakeOrg(
        [
            _status(
                "Failed", done=True, details=[failure(WORKFLOW_RULE, WF, "no new workflow rules")]
            )
        ]
    )
    outcome = deploy_package(_client(org), _spec("workflow"), previous_trigger=Trigger.FLOW)
    assert outcome.outcome == "failed"
    assert outcome.retired == ()
    assert [c for c in org.calls if c[0] == "patch"] == [("patch", 0), ("patch", 3)]
    assert not any(c[0] == "delete" for c in org.calls)
    assert any("reactivated" in w for w in outcome.warnings)
    [end] = [p for p in outcome.problems if "end of support" in p]
    assert "record-triggered flow" in end and "--" not in end  # the CLI adds the flag
    assert setting_of(end) is Setting.TRIGGER
    with pytest.raises(DeployFailed) as raised:
        outcome.raise_for_outcome()
    assert raised.value.deploy_id == "0Af1"


def test_a_flow_version_that_cannot_be_found_is_not_reported_reactivated() -> None:
    org = FakeOrg(
        [_status("Failed", done=True, details=[failure(WORKFLOW_RULE, WF, "no rules")])],
        version_found=False,
    )
    outcome = deploy_package(_client(org), _spec("workflow"), previous_trigger=Trigger.FLOW)
    assert outcome.outcome == "failed"
    assert [c for c in org.calls if c[0] == "patch"] == [("patch", 0)]  # nothing "restored"
    assert not any("reactivated because" in w for w in outcome.warnings)
    assert any("was not reactivated" in p and "Setup > Flows" in p for p in outcome.problems)


def test_check_only_never_retires() -> None:
    org = FakeOrg([_status("Succeeded", done=True, ok=True, check_only=True, details=FLOW_OK)])
    outcome = deploy_package(
        _client(org), _spec("flow"), check_only=True, previous_trigger=Trigger.WORKFLOW
    )
    assert outcome.kind == "check-only" and outcome.outcome == "succeeded"
    assert org.calls == [("deploy", "checkOnly")]


def test_succeeded_without_our_components_is_a_failure() -> None:
    org = FakeOrg([_status("Succeeded", done=True, ok=True, details=[])])
    outcome = deploy_package(_client(org), _spec("workflow"))
    assert outcome.outcome == "failed"
    assert OUTBOUND_MESSAGE in outcome.problems[0] and WORKFLOW_RULE in outcome.problems[0]


def test_timeout_is_raised_with_the_deploy_id() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    org = FakeOrg([_status("InProgress", done=False)] * 10)
    outcome = deploy_package(
        _client(org),
        _spec("workflow"),
        timing=Timing(timeout=3.0, sleep=sleep, clock=lambda: clock[0]),
    )
    assert outcome.outcome == "timeout"
    with pytest.raises(DeployTimeout) as raised:
        outcome.raise_for_outcome()
    assert raised.value.deploy_id == "0Af1"


def test_undeploy_flow_only_needs_no_destructive_deploy() -> None:
    org = FakeOrg([])
    outcome = undeploy(_client(org), [FLOW])
    assert outcome.outcome == "succeeded" and outcome.deploy_id is None
    assert ("patch", 0) in org.calls and any(c[0] == "delete" for c in org.calls)
    assert not any(c[0] == "deploy" for c in org.calls)


def test_client_maps_simple_salesforce_errors_into_the_tree() -> None:
    from simple_salesforce.exceptions import (
        SalesforceExpiredSession,
        SalesforceResourceNotFound,
    )

    from deployer.credentials import Credentials
    from sf_metadata.errors import AuthenticationError, SalesforceError

    logins: list[str] = []

    def fake_login(credentials: Credentials, *, api_version: str, session: object) -> Any:
        logins.append(api_version)

        class Sf:
            sf_instance = "orgname.my.salesforce.com"

        return Sf()

    def expired() -> None:
        raise SalesforceExpiredSession("u", 401, "r", [{"errorCode": "INVALID_SESSION_ID"}])  # type: ignore[arg-type]

    def missing() -> None:
        raise SalesforceResourceNotFound(
            "u",
            404,
            "r",
            [{"errorCode": "NOT_FOUND", "message": "gone"}],  # type: ignore[arg-type]
        )

    session_client = OrgClient(
        Credentials(kind="session", instance_url="https://x", access_token="t"),
        api_version="62.0",
        login_fn=fake_login,
    )
    with pytest.raises(AuthenticationError, match="cannot be refreshed"):
        session_client._call(expired, "a query")
    with pytest.raises(SalesforceError, match="NOT_FOUND: gone"):
        session_client._call(missing, "describe X")
    refreshable = OrgClient(
        Credentials(
            kind="client-credentials", consumer_key="k", consumer_secret="s", domain="acme.my"
        ),
        api_version="62.0",
        login_fn=fake_login,
    )
    with pytest.raises(AuthenticationError, match="again"):
        refreshable._call(expired, "a query")
    assert logins == ["62.0", "62.0", "62.0"]  # two clients + exactly one re-login


RULE_GONE = f"No WorkflowRule named: User.{WORKFLOW_RULE.split('.', 1)[1]} found"


def _clocked(timeout: float) -> Timing:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return Timing(timeout=timeout, sleep=sleep, clock=lambda: clock[0])


def test_workflow_to_flow_sends_ignore_warnings_and_takes_a_rule_already_gone() -> None:
    org = FakeOrg(
        [
            _status(
                "Succeeded",
                done=True,
                ok=True,
                details=[
                    *FLOW_OK,
                    failure(
                        WORKFLOW_RULE,
                        "destructiveChangesPost.xml",
                        RULE_GONE,
                        problem_type="Warning",
                    ),
                ],
            )
        ]
    )
    outcome = deploy_package(_client(org), _spec("flow"), previous_trigger=Trigger.WORKFLOW)
    assert org.ignore_warnings == [True]
    assert outcome.outcome == "succeeded", outcome.problems
    assert outcome.retired == (WORKFLOW_RULE,)
    assert any(RULE_GONE in w for w in outcome.warnings)


def test_plain_deploy_keeps_warnings_fatal() -> None:
    org = FakeOrg([_status("Succeeded", done=True, ok=True, details=WORKFLOW_OK)])
    deploy_package(_client(org), _spec("workflow"))
    assert org.ignore_warnings == [False]


def test_failed_deploy_with_only_warnings_reports_them_as_problems() -> None:
    org = FakeOrg(
        [
            _status(
                "Failed",
                done=True,
                details=[
                    failure(
                        WORKFLOW_RULE,
                        "destructiveChangesPost.xml",
                        RULE_GONE,
                        problem_type="Warning",
                    )
                ],
            )
        ]
    )
    outcome = deploy_package(_client(org), _spec("flow"), previous_trigger=Trigger.WORKFLOW)
    assert outcome.outcome == "failed"
    assert RULE_GONE in outcome.problems[0]
    assert not any("no reason given" in p for p in outcome.problems)
    assert outcome.retired == ()


@pytest.mark.parametrize(
    "error", [SalesforceError("network down"), AuthenticationError("session expired")]
)
def test_flow_to_workflow_reactivates_the_flow_when_the_deploy_raises(error: Exception) -> None:
    org = FakeOrg([])
    org.fail["status"] = error
    with pytest.raises(type(error)) as raised:
        deploy_package(_client(org), _spec("workflow"), previous_trigger=Trigger.FLOW)
    assert raised.value is error
    assert [c for c in org.calls if c[0] == "patch"] == [("patch", 0), ("patch", 3)]
    assert org.flow_active


def test_flow_to_workflow_timeout_keeps_the_flow_off_and_says_so() -> None:
    org = FakeOrg([_status("InProgress", done=False)] * 10)
    outcome = deploy_package(
        _client(org), _spec("workflow"), previous_trigger=Trigger.FLOW, timing=_clocked(3.0)
    )
    assert outcome.outcome == "timeout"
    assert outcome.retired == ()
    assert [c for c in org.calls if c[0] == "patch"] == [("patch", 0)]
    assert not any(c[0] == "delete" for c in org.calls)
    [note] = [p for p in outcome.problems if "Agent_Auto_Provision_User_Sync_Flow" in p]
    assert "Setup > Flows" in note and "0Af1" in note
    with pytest.raises(DeployTimeout) as raised:
        outcome.raise_for_outcome()
    assert note in raised.value.problems


def test_flow_to_workflow_with_the_flow_already_gone() -> None:
    org = FakeOrg(
        [_status("Succeeded", done=True, ok=True, details=WORKFLOW_OK)], flow_exists=False
    )
    outcome = deploy_package(_client(org), _spec("workflow"), previous_trigger=Trigger.FLOW)
    assert outcome.outcome == "succeeded"
    assert not any(c[0] in ("patch", "delete") for c in org.calls)


def test_tooling_errors_after_the_deploy_become_warnings() -> None:
    org = FakeOrg([_status("Succeeded", done=True, ok=True, details=WORKFLOW_OK)])
    org.fail["delete"] = SalesforceError("HTTP 500")
    outcome = deploy_package(_client(org), _spec("workflow"), previous_trigger=Trigger.FLOW)
    assert outcome.outcome == "succeeded" and outcome.deploy_id == "0Af1"
    assert outcome.retired == (FLOW,)
    assert any("could not be deleted" in w and "HTTP 500" in w for w in outcome.warnings)

    org = FakeOrg([_status("Succeeded", done=True, ok=True, details=FLOW_OK)])
    org.fail["definition"] = SalesforceError("HTTP 503")
    outcome = deploy_package(_client(org), _spec("flow"))
    assert outcome.outcome == "succeeded"
    assert any("FlowDefinition" in w and "HTTP 503" in w for w in outcome.warnings)


def test_rule_gone_is_only_excused_for_what_we_retire() -> None:
    org = FakeOrg(
        [
            _status(
                "Succeeded",
                done=True,
                ok=True,
                details=[
                    success(OUTBOUND_MESSAGE, WF),
                    failure(WORKFLOW_RULE, WF, RULE_GONE, problem_type="Warning"),
                ],
            )
        ]
    )
    outcome = deploy_package(_client(org), _spec("workflow"))
    assert outcome.outcome == "failed"
    assert WORKFLOW_RULE in outcome.problems[0]


@pytest.mark.parametrize(
    ("trigger", "previous", "check_only", "expected"),
    [
        (Trigger.FLOW, Trigger.WORKFLOW, False, (WORKFLOW_RULE,)),
        (Trigger.WORKFLOW, Trigger.FLOW, False, (FLOW,)),
        (Trigger.FLOW, Trigger.FLOW, False, ()),
        (Trigger.FLOW, None, False, ()),
        (Trigger.FLOW, Trigger.WORKFLOW, True, ()),
    ],
)
def test_a_deploy_retires_only_the_other_trigger_and_never_in_a_validation(
    trigger: Trigger, previous: Trigger | None, check_only: bool, expected: tuple[str, ...]
) -> None:
    """The Outbound Message is shared by both triggers, so it is never retired."""
    assert retired_components(trigger, previous, check_only=check_only) == expected
