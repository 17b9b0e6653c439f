"""The ``agent-provision`` command line (click), CONTRACT section 4.

``main`` is the console script. Subcommands: ``serve``, ``org ...``, ``users`` and, once
``receiver/cli/deploy.py`` exists, ``check``, ``deploy`` and ``undeploy``. Every
subcommand accepts ``--database-url`` (also after its arguments). Errors of the tree in
``sf_metadata/errors.py`` become one ``error: ...`` line per problem on stderr and the exit
code of ``receiver/cli/_errors.py``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from receiver.cli._errors import report_error
from receiver.cli._options import database_url_option
from sf_metadata.errors import AgentProvisionError

__all__ = ["main"]


class _Main(click.Group):
    """The root group: maps :class:`AgentProvisionError` to stderr lines + exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentProvisionError as error:
            ctx.exit(report_error(error))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@database_url_option
@click.version_option(package_name="agent-auto-provision", prog_name="agent-provision")
def main() -> None:
    """Keep a contact-center app's agents in step with Salesforce Users.

    The store is a SQLAlchemy URL from --database-url (any subcommand) or
    AGENT_PROVISION_DATABASE_URL; default sqlite:///agent_provision.db.
    """
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _register() -> None:
    from receiver.cli.org import org
    from receiver.cli.serve import serve
    from receiver.cli.users import users

    main.add_command(serve)
    main.add_command(org)
    main.add_command(users)
    try:  # the deployer's commands, written by another engineer; optional until it lands
        deploy_module = importlib.import_module("receiver.cli.deploy")
    except ModuleNotFoundError as error:
        if error.name != "receiver.cli.deploy":
            raise
        return
    for name in ("check", "deploy", "undeploy"):
        command = getattr(deploy_module, name, None)
        if isinstance(command, click.Command):
            main.add_command(command, name)


_register()
