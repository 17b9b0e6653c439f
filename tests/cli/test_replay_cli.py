"""``agent-provision replay``: the failures of the provisioning log decided again, once
each, oldest first (receiver.replay_batch, the log page's Replay failed too). On both
backends."""

from __future__ import annotations

import json

from receiver.db import make_engine, transaction
from receiver.models import Organization
from receiver.provisioning_tables import FailedNotification
from tests.cli.conftest import Run
from tests.cli.test_org_users import ORG_ID, _ok
from tests.receiver.test_replay import deliver, event_id, note, user


def _org_with_failures(run: Run, database_url: str) -> list[int]:
    _ok(run("org", "add", "demo", "--salesforce-org-id", ORG_ID))
    _ok(run("org", "enable", "demo"))
    engine = make_engine(database_url)
    try:
        with transaction(engine, read_only=True) as session:
            org = session.get(Organization, "demo")
            assert org is not None
        result = deliver(engine, org, note(1, 0, IsActive=None), note(2, 0, IsActive=None))
        events = [event_id(engine, result, 0), event_id(engine, result, 1)]
        with transaction(engine) as session:  # a fix makes user 1's change decidable
            kept = session.get(FailedNotification, events[0])
            assert kept is not None
            kept.fields = {**kept.fields, "IsActive": "true"}
            session.add(kept)
    finally:
        engine.dispose()
    return events


def test_dry_run_lists_then_replay_runs_each_failure_once(run: Run, database_url: str) -> None:
    events = _org_with_failures(run, database_url)
    dry = json.loads(_ok(run("replay", "demo", "--dry-run", "--json")))
    assert dry == {"organization": "demo", "pending": 2, "pendingAgain": 0, "eventIds": events}
    only_one = _ok(run("replay", "demo", "--user", user(1)[:15], "--dry-run"))
    assert only_one.startswith("1 failed notification(s) of demo to replay")
    done = json.loads(_ok(run("replay", "demo", "--json")))
    assert done == {
        "organization": "demo",
        "replayed": 2,
        "actions": {"created": 1, "failed": 1},
        "remaining": 0,
    }
    assert [a["crmId"] for a in json.loads(_ok(run("users", "demo", "--json")))] == [user(1)]
    # user 2's replay failed again: only --again takes that new failure
    nothing = _ok(run("replay", "demo")).strip()
    assert nothing == "replayed 0 failed notification(s) of demo: nothing to do"
    hint = _ok(run("replay", "demo", "--dry-run")).strip()
    assert hint.endswith("(1 more failed again on a replay: --again)")
    again = _ok(run("replay", "demo", "--again", "--limit", "1")).strip()
    assert again == "replayed 1 failed notification(s) of demo: failed 1"


def test_source_limits_the_replay_to_failures_of_one_source(run: Run, database_url: str) -> None:
    events = _org_with_failures(run, database_url)
    of_reconcile = json.loads(
        _ok(run("replay", "demo", "--source", "reconcile", "--dry-run", "--json"))
    )
    assert of_reconcile["pending"] == 0 and of_reconcile["eventIds"] == []
    delivered = json.loads(
        _ok(run("replay", "demo", "--source", "outbound-message", "--dry-run", "--json"))
    )
    assert delivered["eventIds"] == events
    _ok(run("replay", "demo", "--source", "outbound-message"))  # user 2 fails again
    of_replays = json.loads(
        _ok(run("replay", "demo", "--source", "replay", "--again", "--dry-run", "--json"))
    )
    assert (of_replays["pending"], of_replays["pendingAgain"]) == (0, 1)
    unknown = run("replay", "demo", "--source", "webhook")
    assert unknown.exit_code == 2 and "outbound-message" in unknown.stderr


def test_bad_arguments_exit_2_and_an_unknown_organization_4(run: Run, database_url: str) -> None:
    _org_with_failures(run, database_url)
    backwards = run("replay", "demo", "--from", "2026-12-05", "--to", "2026-12-01", "--dry-run")
    assert backwards.exit_code == 0
    assert "--from 2026-12-05 is after --to 2026-12-01: the dates were swapped" in backwards.stderr
    widest = run("replay", "demo", "--from", "0001-01-01", "--to", "9999-12-31", "--dry-run")
    assert widest.exit_code == 0 and widest.stdout.startswith("2 failed notification(s)")
    not_a_user = run("replay", "demo", "--user", "001000000000001")
    assert not_a_user.exit_code == 2 and "not a Salesforce User id" in not_a_user.stderr
    assert run("replay", "demo", "--limit", "501").exit_code == 2
    unknown = run("replay", "nope")
    assert unknown.exit_code == 4 and "not registered" in unknown.stderr
    assert json.loads(_ok(run("replay", "demo", "--dry-run", "--json")))["pending"] == 2


def test_a_replay_while_the_feature_is_off_exits_2_and_uses_nothing_up(
    run: Run, database_url: str
) -> None:
    _org_with_failures(run, database_url)
    _ok(run("org", "disable", "demo"))
    off = run("replay", "demo")
    assert off.exit_code == 2 and "Agent Auto Provision is off for demo" in off.stderr
    _ok(run("org", "enable", "demo"))
    assert json.loads(_ok(run("replay", "demo", "--dry-run", "--json")))["pending"] == 2
