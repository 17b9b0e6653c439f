"""The error tree (``sf_metadata/errors.py``) mapped to CLI exit codes, in one place.

==========================  =====
error                       exit
==========================  =====
OrganizationNotFound        4
PlanNotFound                4
ReplayNotFound              4
UsageError (other)          2     (click's own usage errors also exit 2)
AuthenticationError         3
PreflightError              5
DeployFailed                6
DeployTimeout               7
ReconcileHeld               8     (the deletion guard held the plan; nothing written)
SalesforceUnreadable        9     (Salesforce could not be read or reached; nothing written)
StoreUnavailable            75    (EX_TEMPFAIL from sysexits.h: try again later)
any other AgentProvisionError  1
==========================  =====

Each problem of an error (``error.problems``) is written as one ``error: ...`` line on
standard error. A ``DeployFailed``/``DeployTimeout`` carrying a deploy id adds a line
naming it, so the deploy can be followed up in Setup > Deployment Status.
"""

from __future__ import annotations

import click

from sf_metadata.errors import (
    AgentProvisionError,
    AuthenticationError,
    DeployFailed,
    DeployTimeout,
    OrganizationNotFound,
    PlanNotFound,
    PreflightError,
    ReconcileHeld,
    ReplayNotFound,
    SalesforceUnreadable,
    StoreUnavailable,
    UsageError,
)

__all__ = ["EXIT_CODES", "exit_code_for", "report_error"]

#: Most specific first: the first class the error is an instance of gives the code.
EXIT_CODES: tuple[tuple[type[AgentProvisionError], int], ...] = (
    (OrganizationNotFound, 4),
    (PlanNotFound, 4),
    (ReplayNotFound, 4),
    (UsageError, 2),
    (AuthenticationError, 3),
    (PreflightError, 5),
    (DeployFailed, 6),
    (DeployTimeout, 7),
    (ReconcileHeld, 8),
    (SalesforceUnreadable, 9),
    (StoreUnavailable, 75),
)


def exit_code_for(error: AgentProvisionError) -> int:
    """The process exit code for ``error`` (see the module table); 1 if unlisted."""
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


def report_error(error: AgentProvisionError) -> int:
    """Write one ``error: ...`` line per problem of ``error`` on stderr; return its exit
    code. Never raises."""
    for problem in error.problems or (error.message,):
        click.echo(f"error: {problem}", err=True)
    deploy_id = getattr(error, "deploy_id", None)
    if isinstance(error, (DeployFailed, DeployTimeout)) and deploy_id:
        click.echo(
            f"error: deploy id {deploy_id}: follow it up in Setup > Deployment Status", err=True
        )
    return exit_code_for(error)
