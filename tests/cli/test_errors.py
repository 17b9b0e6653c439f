"""The error tree -> exit code mapping (receiver/cli/_errors.py), and its stderr lines."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.cli._errors import exit_code_for, report_error
from sf_metadata import errors as e


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (e.UsageError("x"), 2),
        (e.InvalidOrganizationName("x"), 2),
        (e.OrganizationExists("x"), 2),
        (e.InvalidSalesforceId("x"), 2),
        (e.CredentialsError("x"), 2),
        (e.OrganizationNotFound("x"), 4),
        (e.AuthenticationError("x"), 3),
        (e.PreflightError("x"), 5),
        (e.DeployFailed("x"), 6),
        (e.DeployTimeout("x", deploy_id="0Af000000000001"), 7),
        (e.StoreUnavailable("x"), 75),
        (e.SalesforceError("x"), 1),
        (e.MalformedXml("x"), 1),
        (e.AgentProvisionError("x"), 1),
    ],
)
def test_exit_codes(error: e.AgentProvisionError, code: int) -> None:
    assert exit_code_for(error) == code


def test_every_problem_is_one_stderr_line() -> None:
    @click.command()
    def boom() -> None:
        raise e.PreflightError("2 problems", problems=["first: fix A", "second: fix B"])

    main.add_command(boom, "boom-test")
    try:
        result = CliRunner().invoke(main, ["boom-test"])
    finally:
        main.commands.pop("boom-test")
    assert result.exit_code == 5
    assert result.stderr == "error: first: fix A\nerror: second: fix B\n"
    assert result.stdout == ""


def test_deploy_timeout_names_its_deploy_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_error(e.DeployTimeout("timed out", deploy_id="0Af000000000042")) == 7
    err = capsys.readouterr().err
    assert "error: timed out\n" in err and "0Af000000000042" in err
