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


#: Subcommand name -> (module, attribute). Imported on first use only, so that
#: ``org url`` does not pay for the Salesforce client (click's documented lazy-group
#: pattern: https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands).
_COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("receiver.cli.deploy", "check"),
    "deploy": ("receiver.cli.deploy", "deploy"),
    "migrate": ("receiver.cli.migrate", "migrate"),
    "operator": ("receiver.cli.operator", "operator"),
    "org": ("receiver.cli.org", "org"),
    "reconcile": ("receiver.cli.reconcile", "reconcile_group"),
    "replay": ("receiver.cli.replay", "replay"),
    "serve": ("receiver.cli.serve", "serve"),
    "undeploy": ("receiver.cli.deploy", "undeploy"),
    "users": ("receiver.cli.users", "users"),
}


class _Main(click.Group):
    """The root group: loads subcommands lazily and maps :class:`AgentProvisionError` to
    stderr lines + exit code (``receiver/cli/_errors.py``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module_name, attribute = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):  # pragma: no cover - wiring error
                raise TypeError(f"{module_name}.{attribute} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

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
