"""Shared click options and the per-invocation state of the CLI.

``--database-url`` is accepted by the group and by every subcommand (so it may come
after a command's arguments: ``agent-provision users demo --json --database-url URL``,
CONTRACT section 1). The value named last wins; absent everywhere, ``Settings`` reads
``AGENT_PROVISION_DATABASE_URL`` or uses ``sqlite:///agent_provision.db``.
:func:`settings_from` builds the :class:`~receiver.settings.Settings` once per invocation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sf_metadata.errors import OrganizationNotFound, StoreNotFound, StoreOutdated, UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from receiver.settings import Settings

__all__ = [
    "CliState",
    "cli_actor",
    "database_url_option",
    "json_option",
    "secret_key_from",
    "settings_from",
    "not_registered",
    "open_store_for_reading",
    "read_session",
    "state_from",
    "open_store",
    "store_engine",
    "store_session",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """Mutable per-invocation state kept in ``click.Context.obj``."""

    database_url: str | None = None
    settings: Settings | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def state_from(ctx: click.Context) -> CliState:
    """The :class:`CliState` of this invocation (created on first use)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def _remember_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        state = state_from(ctx)
        state.database_url = value
        state.settings = None


def database_url_option(func: F) -> F:
    """``--database-url URL``: a SQLAlchemy URL (``sqlite:///path``,
    ``postgresql+psycopg://...``); also read from ``AGENT_PROVISION_DATABASE_URL``."""
    return click.option(
        "--database-url",
        metavar="URL",
        default=None,
        expose_value=False,
        callback=_remember_url,
        is_eager=True,
        help="SQLAlchemy URL of the store (env AGENT_PROVISION_DATABASE_URL; "
        "default sqlite:///agent_provision.db).",
    )(func)


def _organization_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from receiver.org_address import validate_organization_name

    return validate_organization_name(value)


def organization_argument(func: F) -> F:
    """The ORGANIZATION argument, checked as a name (1 to 63 of ``[a-z0-9-]``, first not
    ``-``) before any store is read: a malformed one is a usage error (exit 2), not an
    unknown organization (exit 4)."""
    return click.argument("organization", callback=_organization_name)(func)


def json_option(func: F) -> F:
    """``--json``: print machine-readable JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def settings_from(ctx: click.Context) -> Settings:
    """Build :class:`Settings` once for this invocation (flags, then environment).

    Raises :class:`~sf_metadata.errors.UsageError` naming each invalid setting.
    """
    from pydantic import ValidationError

    from receiver.settings import Settings

    state = state_from(ctx)
    if state.settings is None:
        kwargs: dict[str, Any] = {}
        if state.database_url is not None:
            kwargs["database_url"] = state.database_url
        try:
            state.settings = Settings(**kwargs)
        except ValidationError as error:
            problems = [
                f"setting {'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']} "
                f"(check its AGENT_PROVISION_ environment variable or flag)"
                for e in error.errors()
            ]
            raise UsageError(problems[0], problems=problems) from None
    return state.settings


def open_store(
    ctx: click.Context, organization: str | None = None, *, create: bool = False
) -> Engine:
    """The engine of the store of this invocation, migrated to the newest schema (the
    caller disposes of it). Only a command that may start a store (``create``: ``org
    add``, ``operator add``) makes a new one. Any other command changes something that
    must already be stored, so a missing store is an error and nothing (no file,
    directory or table) is created: run from the wrong directory, it says which store it
    looked at instead of making an empty one there.

    Raises :class:`~sf_metadata.errors.StoreNotFound` (or, for a command about
    ``organization``, :class:`~sf_metadata.errors.OrganizationNotFound`: exit 4),
    :class:`~sf_metadata.errors.StoreUnavailable` when it cannot be reached and
    :class:`~sf_metadata.errors.UsageError` for an unusable URL.
    """
    from receiver.db import make_engine, migrate, open_existing

    url = settings_from(ctx).database_url
    if create:
        engine = make_engine(url)
    else:
        try:
            engine = open_existing(url)
        except StoreOutdated:
            engine = make_engine(url)  # there, at an older schema: migrated below
        except StoreNotFound as error:
            if organization:
                raise not_registered(error, organization) from error
            raise
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def store_engine(
    ctx: click.Context, organization: str | None = None, *, create: bool = False
) -> Iterator[Engine]:
    """:func:`open_store`, disposed when the block ends."""
    engine = open_store(ctx, organization, create=create)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def store_session(
    ctx: click.Context, organization: str | None = None, *, create: bool = False
) -> Iterator[Session]:
    """A session inside one transaction on :func:`open_store`, committed when the block
    ends. Raises as :func:`open_store`."""
    from receiver.db import transaction

    with store_engine(ctx, organization, create=create) as engine, transaction(engine) as session:
        yield session


@contextmanager
def read_session(ctx: click.Context, organization: str | None = None) -> Iterator[Session]:
    """For commands that only read: a session in one read-only transaction on the store of
    this invocation, which must already exist at the newest schema. Nothing is created
    (no file, directory or table) and nothing is migrated (``receiver.db.open_existing``).

    Raises :class:`~sf_metadata.errors.StoreNotFound` when there is no store, or, for a
    command about ``organization``, :class:`~sf_metadata.errors.OrganizationNotFound`
    saying so (exit 4); :class:`~sf_metadata.errors.StoreOutdated`,
    :class:`~sf_metadata.errors.StoreUnavailable`, :class:`~sf_metadata.errors.UsageError`.
    """
    from receiver.db import transaction

    engine = open_store_for_reading(ctx, organization)
    try:
        with transaction(engine, read_only=True) as session:
            yield session
    finally:
        engine.dispose()


def open_store_for_reading(ctx: click.Context, organization: str | None = None) -> Engine:
    """The engine of :func:`read_session` (the caller disposes of it)."""
    from receiver.db import open_existing

    try:
        return open_existing(settings_from(ctx).database_url)
    except StoreNotFound as error:
        if organization:
            raise not_registered(error, organization) from error
        raise


def not_registered(error: StoreNotFound, organization: str) -> OrganizationNotFound:
    """``organization`` is not registered because there is no store (``error``)."""
    return OrganizationNotFound(
        f"organization {organization!r} is not registered: {error.message}",
        setting=error.setting,
    )


def secret_key_from(ctx: click.Context, *, create: bool = True) -> bytes:
    """The Fernet key of the store (``AGENT_PROVISION_SECRET_KEY`` or the key file beside
    the store, see ``receiver.secrets``), the key file created unless ``create`` is false
    (commands that only read). Raises :class:`~sf_metadata.errors.CredentialsError`."""
    from receiver.secrets import load_key

    settings = settings_from(ctx)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    return load_key(settings.database_url, secret, create=create)


def cli_actor() -> str:
    """Who acts from a shell (the Features page's history, a job's or a plan's "by"):
    ``cli:<login>@<host>``, the login of the process's user id from the password database
    (not ``LOGNAME`` or ``USER``, which the caller sets), each part cut to 64 characters;
    ``cli:uid<n>@<host>`` for a user id without a passwd entry (a container)."""
    import os
    import pwd
    import socket

    uid = os.geteuid()
    try:
        login = pwd.getpwuid(uid).pw_name
    except KeyError:
        login = f"uid{uid}"
    return f"cli:{login[:64]}@{socket.gethostname()[:64]}"
