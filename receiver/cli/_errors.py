"""The error tree (``sf_metadata/errors.py``) mapped to CLI exit codes, in one place.

==========================  =====
error                       exit
==========================  =====
OrganizationNotFound        4
OperatorNotFound            4
PlanNotFound                4
ReplayNotFound              4
UsageError (other)          2     (click's own usage errors also exit 2; StoreNotFound:
                                  a command that only reads found no store)
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
standard error. Messages from the core and the deployer say the problem only; the CLI adds
its own hint, on the same line, to a problem that names the input it concerns
(:class:`~sf_metadata.errors.Setting`, see :data:`FLAG_HINTS`) or whose class has one
(:data:`CLASS_HINTS`), once per hint. A ``DeployFailed``/``DeployTimeout`` carrying a
deploy id adds a line naming it, so the deploy can be followed up in Setup > Deployment
Status.
"""

from __future__ import annotations

import click

from sf_metadata.errors import (
    AgentProvisionError,
    AuthenticationError,
    CredentialsError,
    DeployFailed,
    DeployTimeout,
    OperatorExists,
    OperatorNotFound,
    OrganizationExists,
    OrganizationNotFound,
    PlanNotFound,
    PreflightError,
    ReconcileHeld,
    ReplayNotFound,
    SalesforceUnreadable,
    Setting,
    StoreOutdated,
    StoreUnavailable,
    UsageError,
    setting_of,
)

__all__ = [
    "CLASS_HINTS",
    "EXIT_CODES",
    "FLAG_HINTS",
    "error_lines",
    "exit_code_for",
    "report_error",
]

#: The CLI's words for each input a problem may concern.
FLAG_HINTS: dict[Setting, str] = {
    Setting.DATABASE_URL: (
        "point --database-url (or AGENT_PROVISION_DATABASE_URL) at the store, such as "
        "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    ),
    Setting.ORGANIZATION: (
        "see `agent-provision org list`, or add it with `agent-provision org add`"
    ),
    Setting.BASE_URL: (
        "set where Salesforce reaches this service with --base-url URL "
        "(`agent-provision org update ORGANIZATION --base-url URL`)"
    ),
    Setting.SALESFORCE_ORG_ID: (
        "give the org id with --salesforce-org-id ID (after a sandbox refresh: "
        "`agent-provision org update ORGANIZATION --salesforce-org-id ID`)"
    ),
    Setting.API_VERSION: "pass --api-version NN.0 (53.0 or later for --trigger flow)",
    Setting.TRIGGER: "deploy with --trigger flow",
    Setting.CUSTOM_FIELD: "name custom User fields as --custom-field Badge__c",
    Setting.INTEGRATION_USER: "pass an existing, active username with --integration-user USERNAME",
    Setting.ACCESS_TOKEN: (
        "get a new --access-token (SF_ACCESS_TOKEN), or log in with JWT or client credentials"
    ),
    Setting.INSTANCE_URL: "give it as --instance-url URL (or SF_INSTANCE_URL)",
    Setting.PRIVATE_KEY_FILE: "give it as --private-key-file PATH (or SF_PRIVATE_KEY_FILE)",
    Setting.LOGIN_DOMAIN: (
        "set --domain (or SF_DOMAIN): login, test, or the org's My Domain such as acme.my"
    ),
    Setting.CREDENTIALS: (
        "give --instance-url + --access-token (SF_INSTANCE_URL, SF_ACCESS_TOKEN), or "
        "--username + --consumer-key + --private-key-file (JWT), or --consumer-key + "
        "--consumer-secret + --domain (client credentials), or --username + --password + "
        "--security-token (SOAP login); the command's --help lists them"
    ),
    Setting.MAX_DELETIONS: "raise the limit with --max-deletions N",
    Setting.APPROVAL: (
        "apply it with `agent-provision reconcile apply ORGANIZATION PLAN_ID "
        "--approve-deletions`, or `agent-provision reconcile reject ORGANIZATION PLAN_ID`"
    ),
    Setting.SECRET_KEY: (
        "restore the key file (or AGENT_PROVISION_SECRET_KEY) that was used, or run "
        "`agent-provision org rotate-token ORGANIZATION` and refresh the webhook"
    ),
}

#: Hints by error class (most specific first), for errors that name no :class:`Setting`.
CLASS_HINTS: tuple[tuple[type[AgentProvisionError], str], ...] = (
    (OrganizationNotFound, FLAG_HINTS[Setting.ORGANIZATION]),
    (OrganizationExists, "see it with `agent-provision org show NAME`, or choose another name"),
    (OperatorNotFound, "see `agent-provision operator list`"),
    (
        StoreOutdated,
        "migrate it by running `agent-provision migrate` (or `agent-provision serve`, or any "
        "command that writes) once, "
        "or point --database-url at the store of this release",
    ),
    (
        OperatorExists,
        "change its password with `agent-provision operator set-password USERNAME`, or "
        "choose another username",
    ),
)

#: Most specific first: the first class the error is an instance of gives the code.
EXIT_CODES: tuple[tuple[type[AgentProvisionError], int], ...] = (
    (OrganizationNotFound, 4),
    (OperatorNotFound, 4),
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


def error_lines(error: AgentProvisionError) -> list[str]:
    """The ``error: ...`` lines for ``error``: one per problem, each followed on the same
    line by the CLI hint for the :class:`Setting` it names (once per hint); when no line
    names one, the first line gets the error's own setting hint or its class hint."""
    problems = list(error.problems or (error.message,))
    lines: list[str] = []
    used: set[str] = set()
    for problem in problems:
        setting = setting_of(problem)
        hint = FLAG_HINTS[setting] if setting is not None else None
        if hint is not None and hint not in used:
            used.add(hint)
            lines.append(f"error: {problem}; {hint}")
        else:
            lines.append(f"error: {problem}")
    if not used:
        hint = _error_hint(error)
        if hint is not None:
            lines[0] = f"{lines[0]}; {hint}"
    return lines


def _error_hint(error: AgentProvisionError) -> str | None:
    if error.setting is not None:
        return FLAG_HINTS[error.setting]
    if isinstance(error, CredentialsError) and error.missing:
        return _missing_credentials_hint(error.missing)
    for kind, hint in CLASS_HINTS:
        if isinstance(error, kind):
            return hint
    return None


def _missing_credentials_hint(missing: tuple[str, ...]) -> str:
    """``give --private-key-file (or SF_PRIVATE_KEY_FILE)``, for the pieces (keys of
    ``deployer.credentials.CREDENTIAL_OPTIONS``) a nearly complete set lacks."""
    from receiver.cli._credentials import CREDENTIAL_FLAGS

    flags = {flag[2:].replace("-", "_"): (flag, env) for flag, env, _ in CREDENTIAL_FLAGS}
    named = [f"{flags[n][0]} (or {flags[n][1]})" for n in missing if n in flags]
    return "give " + " and ".join(named) + "; see --help for the other credential sets"


def report_error(error: AgentProvisionError) -> int:
    """Write :func:`error_lines` on stderr; return the exit code. Never raises."""
    for line in error_lines(error):
        click.echo(line, err=True)
    deploy_id = getattr(error, "deploy_id", None)
    if isinstance(error, (DeployFailed, DeployTimeout)) and deploy_id:
        click.echo(
            f"error: deploy id {deploy_id}: follow it up in Setup > Deployment Status", err=True
        )
    return exit_code_for(error)
