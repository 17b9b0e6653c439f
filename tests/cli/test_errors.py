"""``receiver/cli/_errors.py``: the CLI adds its flag hints to problems that say only the
problem (the core's and the deployer's messages name no flag)."""

from __future__ import annotations

from receiver.cli._errors import FLAG_HINTS, error_lines, exit_code_for
from sf_metadata.errors import (
    CredentialsError,
    OrganizationNotFound,
    PreflightError,
    Problem,
    ReconcileHeld,
    SalesforceUnreadable,
    Setting,
    UsageError,
)


def test_every_setting_has_a_cli_hint() -> None:
    assert set(FLAG_HINTS) == set(Setting)


def test_a_problem_naming_a_setting_gets_its_flag_hint_once() -> None:
    error = PreflightError(
        "first",
        problems=[
            Problem("API version 52.0 is too old", Setting.API_VERSION),
            "The deploying user lacks a permission",
            Problem("another API version problem", Setting.API_VERSION),
        ],
    )
    assert error_lines(error) == [
        f"error: API version 52.0 is too old; {FLAG_HINTS[Setting.API_VERSION]}",
        "error: The deploying user lacks a permission",
        "error: another API version problem",
    ]
    assert "--api-version" in error_lines(error)[0]


def test_an_error_setting_or_class_hint_goes_on_its_first_line() -> None:
    lines = error_lines(UsageError("the database URL is bad", setting=Setting.DATABASE_URL))
    assert lines == [f"error: the database URL is bad; {FLAG_HINTS[Setting.DATABASE_URL]}"]
    [line] = error_lines(OrganizationNotFound("organization 'x' is not registered"))
    assert line.endswith("see `agent-provision org list`, or add it with `agent-provision org add`")
    assert error_lines(CredentialsError("no credentials")) == ["error: no credentials"]


def test_exit_codes_of_reconcile_held_and_unreadable_salesforce() -> None:
    assert exit_code_for(ReconcileHeld("held", plan_id="p1")) == 8
    assert exit_code_for(SalesforceUnreadable("cannot reach Salesforce")) == 9
