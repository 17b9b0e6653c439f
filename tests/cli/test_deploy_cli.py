"""``agent-provision check | deploy | undeploy`` against the cassettes in ``cassettes/synthetic/``
(CONTRACT section 4; issue 3 "Tests with vcrpy cassettes")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deployer._harness import (
    CLIENT_CREDENTIAL_ARGS,
    INTEGRATION_USER,
    ORG,
    SESSION_ARGS,
    Harness,
)

DEPLOY_ID = "0Af000000000001AAA"
OM = "WorkflowOutboundMessage:User.Agent_Auto_Provision_Outbound_Message"
RULE = "WorkflowRule:User.Agent_Auto_Provision_User_Sync"
FLOW = "Flow:Agent_Auto_Provision_User_Sync_Flow"


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    h = Harness(tmp_path)
    h.add_org()
    return h


def _deploy(*extra: str) -> list[str]:
    """A deploy of the workflow trigger unless ``extra`` names one (the default is flow)."""
    trigger = [] if "--trigger" in extra else ["--trigger", "workflow"]
    return ["deploy", ORG, "--integration-user", INTEGRATION_USER, *SESSION_ARGS, *trigger, *extra]


def test_the_default_trigger_is_the_flow(harness: Harness) -> None:
    args = ["deploy", ORG, "--integration-user", INTEGRATION_USER, *SESSION_ARGS]
    result = harness.run("deploy_flow", args)
    assert result.exit_code == 0, result.stderr
    [row] = harness.deployments()
    assert row["trigger"] == "flow" and row["components"] == [OM, FLOW]


def test_check_passes_and_records_nothing(harness: Harness) -> None:
    result = harness.run(
        "check_ok", ["check", ORG, "--integration-user", INTEGRATION_USER, *SESSION_ARGS, "--json"]
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["apiVersion"] == "62.0"
    assert report["salesforceOrgId"] == "00D000000000001EAA"
    assert report["deployingUser"] == "admin@acme.example.com"
    # long text area and encrypted fields are left out
    assert report["customFields"] == ["Badge__c", "Short_Note__c"]
    assert harness.deployments() == []


def test_deploy_workflow_polls_with_backoff_and_records(harness: Harness) -> None:
    result = harness.run("deploy_workflow", _deploy())
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"deploy id: {DEPLOY_ID}"
    assert "deploy succeeded" in lines[1]
    assert harness.clock.sleeps == [1.0, 1.5]  # Pending, InProgress, then Succeeded
    [row] = harness.deployments()
    assert row["kind"] == "deploy"
    assert row["trigger"] == "workflow"
    assert row["api_version"] == "62.0"
    assert row["components"] == [OM, RULE]
    assert row["deploy_id"] == DEPLOY_ID
    assert row["outcome"] == "succeeded"
    assert row["problems"] == []


def test_deploy_json_keeps_stdout_one_document(harness: Harness) -> None:
    result = harness.run("deploy_workflow", [*_deploy(), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["deployId"] == DEPLOY_ID
    assert data["outcome"] == "succeeded"
    assert data["problems"] == []
    assert f"deploy id: {DEPLOY_ID}" in result.stderr


def test_check_only_deploy_is_recorded_as_check_only(harness: Harness) -> None:
    result = harness.run("deploy_check_only", _deploy("--check-only"))
    assert result.exit_code == 0, result.stderr
    [row] = harness.deployments()
    assert row["kind"] == "check-only"
    assert row["outcome"] == "succeeded"


def test_deploy_flow_verifies_active_version(harness: Harness) -> None:
    result = harness.run("deploy_flow", _deploy("--trigger", "flow"))
    assert result.exit_code == 0, result.stderr
    [row] = harness.deployments()
    assert row["trigger"] == "flow"
    assert row["components"] == [OM, FLOW]
    assert row["outcome"] == "succeeded"


def test_inactive_flow_is_reported(harness: Harness) -> None:
    result = harness.run("deploy_flow_inactive", _deploy("--trigger", "flow"))
    assert result.exit_code == 6
    assert "not active (FlowDefinition.ActiveVersionId)" in result.stderr
    assert "Deploy processes and flows as active" in result.stderr
    [row] = harness.deployments()
    assert row["outcome"] == "inactive-flow"


def test_component_failure_names_component_file_line_and_trigger_flow(harness: Harness) -> None:
    result = harness.run("deploy_component_failure", _deploy())
    assert result.exit_code == 6
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0] == (
        "error: WorkflowRule User.Agent_Auto_Provision_User_Sync (workflows/User.workflow "
        "line 35, col 12): Error: You can't create new workflow rules. Use Flow Builder instead."
    )
    assert "--trigger flow" in errors[1] and "end of support" in errors[1]
    assert f"deploy id {DEPLOY_ID}" in result.stderr
    [row] = harness.deployments()
    assert row["outcome"] == "failed"
    assert len(row["problems"]) == 2


def test_component_failures_list_reports_each(harness: Harness) -> None:
    result = harness.run("deploy_component_failures_list", _deploy("--trigger", "flow"))
    assert result.exit_code == 6
    assert "Flow Agent_Auto_Provision_User_Sync_Flow (flows/" in result.stderr
    assert "no User named integration@acme.example.com found" in result.stderr
    assert "--trigger flow" not in result.stderr
    [row] = harness.deployments()
    assert len(row["problems"]) == 2


def test_error_message_only_failure_is_not_lost(harness: Harness) -> None:
    result = harness.run("deploy_error_message_only", [*_deploy(), "--json"])
    assert result.exit_code == 6
    data = json.loads(result.stdout)
    assert data["outcome"] == "failed"
    assert "UNKNOWN_EXCEPTION" in data["problems"][0]
    assert "1220744558-7618" in result.stderr


def test_timeout_keeps_the_deploy_id(tmp_path: Path) -> None:
    harness = Harness(tmp_path, timeout=2.0)
    harness.add_org()
    result = harness.run("deploy_timeout", _deploy())
    assert result.exit_code == 7
    assert f"deploy id: {DEPLOY_ID}" in result.stdout
    assert DEPLOY_ID in result.stderr
    assert harness.clock.sleeps == [1.0, 1.0]
    [row] = harness.deployments()
    assert row["outcome"] == "timeout"


def test_preflight_missing_permission(harness: Harness) -> None:
    result = harness.run("preflight_missing_permission", _deploy())
    assert result.exit_code == 5
    errors = result.stderr.splitlines()
    assert any('"Customize Application" (PermissionsCustomizeApplication)' in e for e in errors)
    assert any(
        "(PermissionsModifyMetadata)" in e and "(PermissionsModifyAllData)" in e for e in errors
    )
    assert not any("API Enabled" in e for e in errors)
    assert harness.deployments() == []


def test_preflight_failure_with_json_still_prints_one_document(harness: Harness) -> None:
    result = harness.run("preflight_no_call_center", [*_deploy(), "--json"])
    assert result.exit_code == 5
    data = json.loads(result.stdout)
    assert data["deployId"] is None and data["outcome"] == "failed"
    assert any("CallCenter" in p for p in data["problems"])


def test_preflight_no_call_center(harness: Harness) -> None:
    result = harness.run(
        "preflight_no_call_center",
        ["check", ORG, "--integration-user", INTEGRATION_USER, *SESSION_ARGS],
    )
    assert result.exit_code == 5
    assert "No call center exists in this org (CallCenter)" in result.stderr
    assert "Setup > Call Centers" in result.stderr


def test_preflight_other_org_and_loopback_url_reported_together(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.add_org(base_url="http://127.0.0.1:8000")
    result = harness.run("preflight_other_org", _deploy())
    assert result.exit_code == 5
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert "sandbox 00D000000000002" in errors[0] and "Organization.Id" in errors[0]
    assert "127.0.0.1" in errors[1] and "endpointUrl" in errors[1]
    assert "warning: " in result.stderr and "plain http" in result.stderr
    assert "token=" not in result.stderr
    assert harness.deployments() == []


def test_expired_session_logs_in_again_once(harness: Harness) -> None:
    args = ["deploy", ORG, "--integration-user", INTEGRATION_USER, *CLIENT_CREDENTIAL_ARGS]
    result = harness.run("expired_session_refresh", [*args, "--trigger", "workflow"])
    assert result.exit_code == 0, result.stderr
    [row] = harness.deployments()
    assert row["outcome"] == "succeeded"
    assert "test-consumer-secret" not in result.output


def test_expired_existing_session_is_a_clear_error(harness: Harness) -> None:
    result = harness.run("expired_session_direct", _deploy())
    assert result.exit_code == 3
    assert "cannot be refreshed" in result.stderr
    assert "test-access-token" not in result.output


def test_switch_workflow_to_flow_then_undeploy_twice(harness: Harness) -> None:
    first = harness.run("deploy_workflow", _deploy())
    assert first.exit_code == 0, first.stderr
    switch = harness.run("switch_workflow_to_flow", _deploy("--trigger", "flow"))
    assert switch.exit_code == 0, switch.stderr
    assert f"retired: {RULE}" in switch.stdout
    removal = harness.run("undeploy", ["undeploy", ORG, *SESSION_ARGS])
    assert removal.exit_code == 0, removal.stderr
    assert "undeploy succeeded" in removal.stdout
    again = harness.run("undeploy_rerun", ["undeploy", ORG, *SESSION_ARGS, "--json"])
    assert again.exit_code == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["outcome"] == "succeeded"
    assert len(data["warnings"]) == 2
    kinds = [(r["kind"], r["trigger"], r["outcome"]) for r in harness.deployments()]
    assert kinds == [
        ("deploy", "workflow", "succeeded"),
        ("deploy", "flow", "succeeded"),
        ("undeploy", None, "succeeded"),
        ("undeploy", None, "succeeded"),
    ]
    assert harness.deployments()[2]["components"] == [FLOW, OM, RULE]


def test_undeploy_with_nothing_recorded_contacts_nobody(harness: Harness) -> None:
    result = harness.run("no_such_cassette", ["undeploy", ORG], all_played=False)
    assert result.exit_code == 0
    assert "nothing to remove" in result.stdout


@pytest.mark.parametrize("trigger", ["workflow", "flow"])
def test_dry_run_writes_package_and_contacts_nobody(
    harness: Harness, tmp_path: Path, trigger: str
) -> None:
    out = tmp_path / f"out-{trigger}"
    result = harness.run(
        "no_such_cassette",
        [
            "deploy",
            ORG,
            "--dry-run",
            "--out",
            str(out),
            "--trigger",
            trigger,
            "--integration-user",
            INTEGRATION_USER,
            "--custom-field",
            "Badge__c",
        ],
        all_played=False,
    )
    assert result.exit_code == 0, result.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = ["package.xml", "workflows/User.workflow"]
    if trigger == "flow":
        expected.insert(0, "flows/Agent_Auto_Provision_User_Sync_Flow.flow")
    assert written == expected
    assert "<fields>Badge__c</fields>" in (out / "workflows/User.workflow").read_text()
    assert harness.deployments() == []


def test_dry_run_files_are_owner_only_and_said_to_hold_the_token(
    harness: Harness, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "package.xml").write_text("old")
    (out / "package.xml").chmod(0o644)
    args = ["deploy", ORG, "--dry-run", "--out", str(out), "--integration-user", INTEGRATION_USER]
    result = harness.run("no_such_cassette", args, all_played=False)
    assert result.exit_code == 0, result.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert "webhook token" in result.stderr and "0600" in result.stderr


@pytest.mark.parametrize("user", ["integration", "not an@email.com", "a@b", "x" * 75 + "@a.com"])
def test_an_integration_user_that_is_not_a_username_is_refused(
    harness: Harness, tmp_path: Path, user: str
) -> None:
    args = ["deploy", ORG, "--dry-run", "--out", str(tmp_path / "o"), "--integration-user", user]
    result = harness.run("no_such_cassette", args, all_played=False)
    assert result.exit_code == 2
    assert "is not a Salesforce username" in result.stderr
    assert not (tmp_path / "o").exists()


def test_dry_run_needs_integration_user_and_out(harness: Harness) -> None:
    result = harness.run("no_such_cassette", ["deploy", ORG, "--dry-run"], all_played=False)
    assert result.exit_code == 2
    assert "--out DIR" in result.stderr
    assert "--integration-user" in result.stderr


def test_no_credentials_names_every_kind(harness: Harness) -> None:
    result = harness.run("no_such_cassette", ["check", ORG], all_played=False)
    assert result.exit_code == 2
    for flag in ("--access-token", "--private-key-file", "--consumer-secret", "--security-token"):
        assert flag in result.stderr


def test_no_credentials_and_no_connection_says_so_first_in_one_line(harness: Harness) -> None:
    result = harness.run("no_such_cassette", ["check", ORG], all_played=False)
    [line] = result.stderr.strip().splitlines()  # one problem, not one per credential kind
    assert line.startswith(f"error: {ORG} has no stored Salesforce connection: store one with ")
    assert "deploy --help" not in line  # the hint fits every command


def test_switch_to_flow_when_the_rule_is_already_gone(harness: Harness) -> None:
    first = harness.run("deploy_workflow", _deploy())
    assert first.exit_code == 0, first.stderr
    switch = harness.run("switch_workflow_to_flow_rule_gone", _deploy("--trigger", "flow"))
    assert switch.exit_code == 0, switch.stderr
    assert "warning: " in switch.stderr and "No WorkflowRule named" in switch.stderr
    assert f"retired: {RULE}" in switch.stdout
    assert harness.deployments()[-1]["outcome"] == "succeeded"


def test_status_fault_after_the_deploy_id_records_what_the_deploy_carried(harness: Harness) -> None:
    result = harness.run("deploy_status_fault", [*_deploy(), "--json"])
    assert result.exit_code != 0
    data = json.loads(result.stdout)
    assert data["deployId"] == DEPLOY_ID and data["outcome"] == "unknown"
    assert data["components"] == [OM, RULE]
    assert any("UNKNOWN_EXCEPTION" in p for p in data["problems"])
    assert "UNKNOWN_EXCEPTION" in result.stderr
    [row] = harness.deployments()
    assert row["outcome"] == "unknown" and row["components"] == [OM, RULE]
    assert row["deploy_id"] == DEPLOY_ID


def test_after_a_timed_out_workflow_deploy_a_flow_deploy_retires_the_rule(tmp_path: Path) -> None:
    harness = Harness(tmp_path, timeout=2.0)
    harness.add_org()
    timed_out = harness.run("deploy_timeout", _deploy())
    assert timed_out.exit_code == 7
    switch = harness.run("switch_workflow_to_flow", _deploy("--trigger", "flow"))
    assert switch.exit_code == 0, switch.stderr
    assert f"retired: {RULE}" in switch.stdout


def test_dry_run_takes_any_api_version_the_org_cannot_refuse(
    harness: Harness, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = harness.run(
        "no_such_cassette",
        [
            "deploy",
            ORG,
            "--dry-run",
            "--out",
            str(out),
            "--api-version",
            "64.0",
            "--integration-user",
            INTEGRATION_USER,
        ],
        all_played=False,
    )
    assert result.exit_code == 0, result.stderr
    assert "<version>64.0</version>" in (out / "package.xml").read_text()
    low = harness.run(
        "no_such_cassette",
        [
            "deploy",
            ORG,
            "--dry-run",
            "--out",
            str(out),
            "--api-version",
            "52.0",
            "--trigger",
            "flow",
            "--integration-user",
            INTEGRATION_USER,
        ],
        all_played=False,
    )
    assert low.exit_code == 2 and "53.0" in low.stderr


def test_dry_run_removes_its_own_earlier_files_only(harness: Harness, tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = ["deploy", ORG, "--dry-run", "--out", str(out), "--integration-user", INTEGRATION_USER]
    first = harness.run("no_such_cassette", [*base, "--trigger", "flow"], all_played=False)
    assert first.exit_code == 0, first.stderr
    (out / "notes.txt").write_text("mine")
    (out / "destructiveChangesPost.xml").write_text("<Package/>")
    second = harness.run("no_such_cassette", [*base, "--trigger", "workflow"], all_played=False)
    assert second.exit_code == 0, second.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["notes.txt", "package.xml", "workflows/User.workflow"]
    assert not (out / "flows").exists()


def test_check_against_an_unreachable_salesforce_says_so_once_with_exit_9(
    harness: Harness,
) -> None:
    args = ["--instance-url", "https://127.0.0.1:9", "--access-token", "test-access-token"]
    result = harness.invoke(["check", ORG, "--integration-user", INTEGRATION_USER, *args])
    assert result.exit_code == 9, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot be reached" in errors[0]
    assert "--integration-user" not in errors[0] and "permission" not in errors[0].lower()


def test_a_deploy_while_another_runs_for_the_organization_is_refused(harness: Harness) -> None:
    from receiver.db import make_engine
    from receiver.jobs import JobKind, start_job

    engine = make_engine(harness.db_url)
    try:
        running = start_job(engine, ORG, JobKind.REFRESH_WEBHOOK)  # the dashboard's, say
    finally:
        engine.dispose()
    result = harness.run("no_such_cassette", _deploy(), all_played=False)
    assert result.exit_code == 1
    assert f"already running for {ORG} (job {running.job_id})" in result.stderr
    assert harness.deployments() == []


def test_deploy_records_its_steps_and_deploy_id_in_the_job(harness: Harness) -> None:
    from receiver.db import make_engine, transaction
    from receiver.jobs import JobKind, JobState, latest_jobs

    result = harness.run("deploy_flow", _deploy("--trigger", "flow"))
    assert result.exit_code == 0, result.stderr
    engine = make_engine(harness.db_url)
    try:
        with transaction(engine, read_only=True) as session:
            [job] = latest_jobs(session, ORG, JobKind.REFRESH_WEBHOOK)
    finally:
        engine.dispose()
    assert job.state is JobState.SUCCEEDED and job.deploy_id == DEPLOY_ID
    assert [name for name, _ in job.steps] == [
        "preflight",
        "deploying",
        "waiting for Salesforce",
        "checking the flow is active",
    ]
    assert job.result["components"] == [OM, FLOW]
