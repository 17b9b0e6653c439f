"""The Salesforce credential flags of CONTRACT section 4, shared by ``check``, ``deploy``,
``undeploy``, ``org connect`` (and ``reconcile``), and the store engine those commands use.

Kept free of the Salesforce client's imports so that ``org`` stays fast to load;
:data:`CREDENTIAL_FLAGS` names the same variables as ``deployer.credentials.CREDENTIAL_OPTIONS``
(a test holds them equal).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    pass

__all__ = ["CREDENTIAL_FLAGS", "credential_options"]

F = TypeVar("F", bound=Callable[..., Any])

#: (flag, environment variable, help), in CONTRACT section 4 order.
CREDENTIAL_FLAGS: tuple[tuple[str, str, str], ...] = (
    (
        "--instance-url",
        "SF_INSTANCE_URL",
        "existing session: instance URL, such as https://acme.my.salesforce.com",
    ),
    (
        "--access-token",
        "SF_ACCESS_TOKEN",
        "existing session: access token or session id (cannot be refreshed)",
    ),
    ("--username", "SF_USERNAME", "JWT bearer or SOAP login: the Salesforce username"),
    (
        "--consumer-key",
        "SF_CONSUMER_KEY",
        "JWT bearer or client credentials: the External Client App's consumer key",
    ),
    (
        "--private-key-file",
        "SF_PRIVATE_KEY_FILE",
        "JWT bearer: PEM private key of the app's certificate",
    ),
    (
        "--consumer-secret",
        "SF_CONSUMER_SECRET",
        "client credentials: the External Client App's consumer secret",
    ),
    (
        "--domain",
        "SF_DOMAIN",
        "login (default) or test for JWT/SOAP login; the My Domain (acme.my) for client "
        "credentials",
    ),
    ("--password", "SF_PASSWORD", "SOAP login (retired in Summer '27): the password"),
    ("--security-token", "SF_SECURITY_TOKEN", "SOAP login: the user's security token"),
)


def credential_options(func: F) -> F:
    """Add the credential flags (each falls back to its ``SF_*`` variable, then to the
    organization's stored connection)."""
    for flag, env, text in reversed(CREDENTIAL_FLAGS):
        dest = flag[2:].replace("-", "_")
        func = click.option(flag, dest, default=None, metavar="VALUE", help=f"{text} (env {env}).")(
            func
        )
    return func
