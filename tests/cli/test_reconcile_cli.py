"""``agent-provision reconcile`` end to end against the reconcile cassettes (CONTRACT
section 6): run, dry run, disabled organization, show, a held mass deletion approved and
one rejected, a failing page and another org (exit 9, nothing written), an expired
session refreshed mid-run, a user changed between plan and apply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deployer._harness import CLIENT_CREDENTIAL_ARGS, ORG, Harness
from tests.deployer.reconcile_cassettes import CHOSEN_ID, UNKNOWN_ID, USERS

COUNT_KEYS = ["create", "update", "restore", "deprovision", "unchanged", "failed", "notFound"]


@pytest.fixture
def h(tmp_path: Any) -> Harness:
    harness = Harness(tmp_path)
    harness.add_org()
    return harness


def enable(h: Harness) -> None:
    assert h.invoke(["org", "enable", ORG]).exit_code == 0


def run(h: Harness, cassette: str, *extra: str) -> Any:
    return h.run(
        f"reconcile/{cassette}",
        ["reconcile", "run", ORG, "--json", *extra, *CLIENT_CREDENTIAL_ARGS],
    )


def users(h: Harness) -> list[dict[str, Any]]:
    result = h.invoke(["users", ORG, "--json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


def counts(**kw: int) -> dict[str, int]:
    return {k: kw.get(k, 0) for k in COUNT_KEYS}


def test_run_applies_every_user_and_counts_api_calls(h: Harness) -> None:
    enable(h)
    result = run(h, "pages")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"planId", "status", "counts", "apiCalls"}
    assert out["status"] == "applied"
    assert out["counts"] == counts(create=7)
    assert out["apiCalls"] == 6
    agents = users(h)
    assert [a["crmId"] for a in agents] == sorted(u["Id"] for u in USERS)
    assert agents[0]["crm"]["customFields"] == {"Team__c": "team-1"}
    # The same read again changes nothing.
    again = json.loads(run(h, "pages").stdout)
    assert again["status"] == "applied"
    assert again["counts"] == counts(unchanged=7)
    assert users(h) == agents


def test_dry_run_and_disabled_org_only_plan(h: Harness) -> None:
    result = run(h, "pages")  # the feature is disabled: a preview
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    assert preview["status"] == "planned"
    assert users(h) == []
    enable(h)
    out = json.loads(run(h, "pages", "--dry-run").stdout)
    assert out["status"] == "planned" and out["counts"] == counts(create=7)
    assert users(h) == []
    shown = h.invoke(["reconcile", "show", ORG, out["planId"], "--json"])
    assert shown.exit_code == 0
    plan = json.loads(shown.stdout)
    assert plan["planId"] == out["planId"] and plan["status"] == "planned"
    assert plan["counts"] == counts(create=7)
    assert [r["action"] for r in plan["rows"]] == ["create"] * 7
    assert set(plan["rows"][0]) >= {"crmId", "action", "reason", "username"}
    # Applying exactly that plan writes it.
    applied = h.invoke(["reconcile", "apply", ORG, out["planId"], "--json"])
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["status"] == "applied"
    assert len(users(h)) == 7
    # an applied plan's note no longer says it was only planned
    shown = h.invoke(["reconcile", "show", ORG, out["planId"], "--json"])
    assert json.loads(shown.stdout)["detail"] == "planned as a dry run, applied afterwards"

    def note(plan_id: str) -> str:
        shown = h.invoke(["reconcile", "show", ORG, plan_id, "--json"])
        return str(json.loads(shown.stdout)["detail"])

    assert note(preview["planId"]) == "the feature is disabled: a preview of what enabling will do"
    late = h.invoke(["reconcile", "apply", ORG, preview["planId"], "--json"])
    assert late.exit_code == 0, late.output
    assert note(preview["planId"]) == (
        "planned while the feature was disabled, applied after it was enabled"
    )
    again = h.invoke(["reconcile", "apply", ORG, out["planId"]])
    assert again.exit_code == 4
    assert "already applied" in again.stderr


def test_held_mass_deletion_approved(h: Harness) -> None:
    enable(h)
    run(h, "pages")
    result = run(h, "deactivated", "--max-deletions", "2")
    assert result.exit_code == 8, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "held" and out["counts"] == counts(deprovision=7)
    assert "held by the deletion guard" in result.stderr
    # the command to read it can be copied as printed (newcomer finding: it said "...")
    assert f"`agent-provision reconcile show {ORG} {out['planId']}`" in result.stderr
    assert len(users(h)) == 7  # nothing written
    refused = h.invoke(["reconcile", "apply", ORG, out["planId"]])
    assert refused.exit_code == 8
    assert len(users(h)) == 7
    approved = h.invoke(["reconcile", "apply", ORG, out["planId"], "--approve-deletions", "--json"])
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.stdout)["counts"] == counts(deprovision=7)
    assert users(h) == []
    # who ran it and who approved it: this shell's login and host
    from receiver.cli.org import cli_actor

    shown = json.loads(h.invoke(["reconcile", "show", ORG, out["planId"], "--json"]).stdout)
    assert shown["createdBy"] == shown["decidedBy"] == cli_actor()
    assert cli_actor().startswith("cli:") and shown["decidedAt"] is not None


def test_held_mass_deletion_rejected(h: Harness) -> None:
    enable(h)
    run(h, "pages")
    out = json.loads(run(h, "deactivated", "--max-deletions", "0").stdout)
    rejected = h.invoke(["reconcile", "reject", ORG, out["planId"]])
    assert rejected.exit_code == 0 and "rejected" in rejected.stdout
    shown = json.loads(h.invoke(["reconcile", "show", ORG, out["planId"], "--json"]).stdout)
    assert shown["status"] == "rejected"
    from receiver.cli.org import cli_actor

    assert shown["decidedBy"] == cli_actor() and shown["decidedAt"] is not None
    late = h.invoke(["reconcile", "apply", ORG, out["planId"], "--approve-deletions"])
    assert late.exit_code == 4
    assert len(users(h)) == 7
    assert h.invoke(["reconcile", "show", ORG, "nosuchplan"]).exit_code == 4


@pytest.mark.parametrize("cassette", ["failing_page", "other_org"])
def test_unreadable_salesforce_exits_9_and_writes_nothing(h: Harness, cassette: str) -> None:
    enable(h)
    result = run(h, cassette)
    assert result.exit_code == 9, result.output
    assert result.stdout == ""
    assert "nothing was" in result.stderr
    assert users(h) == []


def test_expired_session_refreshed_mid_run(h: Harness) -> None:
    enable(h)
    result = run(h, "expired_session_refresh")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["counts"] == counts(create=7) and out["apiCalls"] == 8


def test_text_output_names_counts_and_calls(h: Harness) -> None:
    enable(h)
    result = h.run("reconcile/pages", ["reconcile", "run", ORG, *CLIENT_CREDENTIAL_ARGS])
    assert result.exit_code == 0, result.output
    assert "applied: create 7, update 0" in result.stdout
    assert "Salesforce API calls: 6" in result.stdout


def test_new_user_org_add_connect_enable_gets_the_existing_users(h: Harness) -> None:
    """As a newcomer: org add (fixture), org connect, org enable: the first reconcile runs
    before enable returns, with the stored connection only, and the users appear."""
    connected = h.run(
        "connect_client_credentials", ["org", "connect", ORG, *CLIENT_CREDENTIAL_ARGS]
    )
    assert connected.exit_code == 0, connected.stderr
    _deployed_before(h)  # so enable's webhook install (its own cassettes) is skipped here
    enabled = h.run("reconcile/pages", ["org", "enable", ORG])
    assert enabled.exit_code == 0, enabled.stderr
    assert "enabled" in enabled.stdout
    assert "applied: create 7" in enabled.stdout
    assert "no Salesforce connection" not in enabled.stderr
    assert [a["crmId"] for a in users(h)] == sorted(u["Id"] for u in USERS)
    # reconcile run needs no credential flags once connected
    again = h.run("reconcile/pages", ["reconcile", "run", ORG, "--json"])
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == counts(unchanged=7)


def _deployed_before(h: Harness) -> None:
    from deployer.kinds import DeploymentKind, DeploymentOutcome, Trigger
    from receiver.db import make_engine, transaction
    from receiver.deployments import record_deployment
    from receiver.models import DeploymentCreate

    engine = make_engine(h.db_url)
    try:
        with transaction(engine) as session:
            record_deployment(
                session,
                DeploymentCreate(
                    organization_id=ORG,
                    kind=DeploymentKind("deploy"),
                    trigger=Trigger("flow"),
                    api_version="62.0",
                    components=["Flow:Agent_Auto_Provision_User_Sync_Flow"],
                    deploy_id=None,
                    outcome=DeploymentOutcome("succeeded"),
                    problems=[],
                ),
            )
    finally:
        engine.dispose()


def test_a_second_run_while_one_runs_is_refused(h: Harness) -> None:
    from receiver.db import make_engine
    from receiver.jobs import JobKind, start_job

    enable(h)
    engine = make_engine(h.db_url)
    try:
        start_job(engine, ORG, JobKind.RECONCILE)  # another worker's run holds the lease
    finally:
        engine.dispose()
    result = h.invoke(["reconcile", "run", ORG, *CLIENT_CREDENTIAL_ARGS])
    assert result.exit_code == 1
    assert "reconcile" in result.stderr and "running" in result.stderr
    assert users(h) == []


def test_enable_without_connection_runs_no_reconcile(h: Harness) -> None:
    result = h.invoke(["org", "enable", ORG])
    assert result.exit_code == 0
    assert "first reconcile" not in result.stdout
    assert result.stdout.strip() == f"organization {ORG}: enabled"
    assert f"note: organization {ORG} has no Salesforce connection" in result.stderr
    assert f"agent-provision org connect {ORG}" in result.stderr
    again = h.invoke(["org", "enable", ORG])  # already enabled: nothing flipped, no note
    assert again.exit_code == 0 and "note:" not in again.stderr


def test_a_run_while_another_runs_for_the_organization_exits_1_and_says_so(h: Harness) -> None:
    """CONTRACT section 4 has no exit code for it ("1 otherwise"): the message says a
    reconcile already runs, which job, and that this command read and wrote nothing."""
    from receiver.db import make_engine
    from receiver.jobs import JobKind, start_job

    enable(h)
    engine = make_engine(h.db_url)
    try:
        running = start_job(engine, ORG, JobKind.RECONCILE)  # the dashboard's, say
    finally:
        engine.dispose()
    result = h.run(
        "no_such_cassette",
        ["reconcile", "run", ORG, "--json", *CLIENT_CREDENTIAL_ARGS],
        all_played=False,
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert f"a reconcile of {ORG} is already running (job {running.job_id})" in errors[0]
    assert "read and wrote nothing" in errors[0]
    assert result.stdout == ""
    assert users(h) == []


def test_run_of_chosen_users_reads_and_applies_only_those(h: Harness) -> None:
    from receiver.db import make_engine, transaction
    from receiver.reconcile.run import last_watermark

    enable(h)
    full = json.loads(run(h, "pages").stdout)
    assert full["counts"] == counts(create=7)
    engine = make_engine(h.db_url)
    try:
        with transaction(engine, read_only=True) as session:
            watermark = last_watermark(session, ORG)
        # user 2 was deactivated since; the read names it by its 15-character id, twice
        one = run(h, "chosen", "--user", CHOSEN_ID[:15], "--user", CHOSEN_ID)
        assert one.exit_code == 0, one.output
        out = json.loads(one.stdout)
        # only the user read is counted: the six others are not notFound
        assert (out["status"], out["counts"]) == ("applied", counts(deprovision=1))
        assert [a["crmId"] for a in users(h)] == sorted(
            u["Id"] for u in USERS if u["Id"] != CHOSEN_ID
        )
        shown = json.loads(h.invoke(["reconcile", "show", ORG, out["planId"], "--json"]).stdout)
        assert [(r["crmId"], r["action"]) for r in shown["rows"]] == [(CHOSEN_ID, "deprovision")]
        with transaction(engine, read_only=True) as session:
            # a read of one user moves no watermark: the next incremental run still
            # starts where the full read ended (the user's newer stamp is not the others')
            assert last_watermark(session, ORG) == watermark
    finally:
        engine.dispose()
    unknown = run(h, "chosen_unknown", "--user", UNKNOWN_ID)
    assert unknown.exit_code == 0, unknown.output
    assert json.loads(unknown.stdout)["counts"] == counts()
    assert "Salesforce returned 0 of the 1 users asked for" in unknown.stderr
    bad = h.invoke(["reconcile", "run", ORG, "--user", "001000000000001", *CLIENT_CREDENTIAL_ARGS])
    assert bad.exit_code == 2 and "not a Salesforce User id" in bad.stderr
