"""``agent-provision operator ...``: the people who sign in to the dashboard (CONTRACT
section 5).

``add USERNAME [--organization ORGANIZATION]... [--password-stdin]``, ``list [--json]``,
``remove USERNAME``, ``set-password USERNAME [--password-stdin]``. The password is read
from standard input with ``--password-stdin`` (one line), else prompted twice without
echo; it is never printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlmodel import Session

from receiver.cli._options import (
    database_url_option,
    json_option,
    read_session,
    store_session,
)
from receiver.dashboard.operators import (
    add_operator,
    list_operators,
    remove_operator,
    set_password,
    validate_password,
)
from sf_metadata.errors import OperatorNotFound, StoreNotFound, UsageError

__all__ = ["operator"]


@contextmanager
def _operator_session(ctx: click.Context, username: str) -> Iterator[Session]:
    """:func:`store_session` for a command about operator ``username``: without a store
    the operator does not exist there (exit 4, naming the store); nothing is created."""
    try:
        with store_session(ctx) as session:
            yield session
    except StoreNotFound as error:
        raise OperatorNotFound(
            f"operator {username!r} does not exist: {error.message}", setting=error.setting
        ) from error


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: standard input is empty; give the password on it")
        return validate_password(line.rstrip("\r\n"))
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return validate_password(str(password))


@click.group()
@database_url_option
def operator() -> None:
    """Manage dashboard operators (who can sign in)."""


@operator.command("add")
@click.argument("username")
@click.option(
    "--organization",
    "organizations",
    multiple=True,
    metavar="ORGANIZATION",
    help="An organization this operator manages (repeat); without it, every organization.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@database_url_option
@click.pass_context
def add(
    ctx: click.Context, username: str, organizations: tuple[str, ...], password_stdin: bool
) -> None:
    """Add operator USERNAME."""
    password = _read_password(password_stdin)
    with store_session(ctx, create=True) as session:
        info = add_operator(
            session, username=username, password=password, organizations=organizations
        )
    scope = (
        "every organization"
        if info.organizations is None
        else "organization(s) " + ", ".join(info.organizations)
    )
    click.echo(f"operator {info.username} added; manages {scope}")


@operator.command("list")
@json_option
@database_url_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List operators (no secrets)."""
    with read_session(ctx) as session:
        rows = list_operators(session)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no operators: add one with `agent-provision operator add USERNAME`")
        return
    width = max(len("USERNAME"), *(len(r.username) for r in rows))
    click.echo(f"{'USERNAME':<{width}}  ORGANIZATIONS")
    for r in rows:
        orgs = "all" if r.organizations is None else ", ".join(r.organizations) or "(none)"
        click.echo(f"{r.username:<{width}}  {orgs}")


@operator.command("remove")
@click.argument("username")
@database_url_option
@click.pass_context
def remove(ctx: click.Context, username: str) -> None:
    """Remove operator USERNAME (its sessions end at once)."""
    with _operator_session(ctx, username) as session:
        remove_operator(session, username=username)
    click.echo(f"operator {username} removed")


@operator.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@database_url_option
@click.pass_context
def set_password_(ctx: click.Context, username: str, password_stdin: bool) -> None:
    """Set the password of USERNAME and end its signed-in sessions."""
    password = _read_password(password_stdin)
    with _operator_session(ctx, username) as session:
        ended = set_password(session, username=username, password=password)
    click.echo(f"password of operator {username} changed; {ended} session(s) ended")
