"""Where the store is, and whether one is there, with the standard library only.

The CLI's read-only commands must never create or migrate a store, and ``org url`` must
answer at once (issue 7: under 0.3 s; importing SQLAlchemy alone takes about 0.2 s of CPU
here, pydantic-settings 0.15 s). This module imports neither:

- :func:`database_url_from`: the store URL a CLI invocation uses (the ``--database-url``
  flag, else ``AGENT_PROVISION_DATABASE_URL``, else :data:`DEFAULT_DATABASE_URL`), the same
  order as :class:`receiver.settings.Settings`, whose field default is this constant.
- :func:`plain_sqlite_path`: the file of a plain ``sqlite:///PATH`` URL (no query string, no
  percent-escapes, not in memory), else ``None`` (then callers use SQLAlchemy's parser,
  :func:`receiver.db.sqlite_database_path`, which agrees with this one on plain URLs).
- :func:`sqlite_revision`: the alembic revision of an existing SQLite file, opened with
  ``mode=rw`` so that a missing file is an error, never a new empty database
  (https://www.sqlite.org/uri.html#urimode).
- :func:`check_revision`: :class:`~sf_metadata.errors.StoreNotFound` for a store without
  the schema, :class:`~sf_metadata.errors.StoreOutdated` for one behind
  :data:`HEAD_REVISION` (``tests/receiver/test_store_probe.py`` checks that the constant is
  the head of ``receiver/migrations``; a new migration updates it).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from sf_metadata.errors import Setting, StoreNotFound, StoreOutdated

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "HEAD_REVISION",
    "SECRET_KEY_ENV",
    "check_revision",
    "database_url_from",
    "missing_store",
    "plain_sqlite_path",
    "sqlite_revision",
]

DEFAULT_DATABASE_URL = "sqlite:///agent_provision.db"
DATABASE_URL_ENV = "AGENT_PROVISION_DATABASE_URL"
SECRET_KEY_ENV = "AGENT_PROVISION_SECRET_KEY"
#: The newest revision in ``receiver/migrations/versions`` (the schema this release reads).
HEAD_REVISION = "0021_search_index_by_writer"

_SQLITE_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")


def database_url_from(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The store URL: ``flag`` if given, else the environment variable, else the default."""
    if flag is not None:
        return flag
    return environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def plain_sqlite_path(url: str) -> Path | None:
    """The absolute file of a plain SQLite URL (``sqlite:///relative`` or
    ``sqlite:////absolute``, relative to the working directory), else ``None``."""
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            database = url[len(prefix) :]
            if not database or database == ":memory:" or any(c in database for c in "?#%"):
                return None
            if database.startswith("file:"):
                return None
            return Path(database).expanduser().resolve()
    return None


def missing_store(where: str) -> StoreNotFound:
    """The error for a store that is not there (``where`` names the file or URL)."""
    return StoreNotFound(
        f"there is no store at {where} (nothing was created there)", setting=Setting.DATABASE_URL
    )


def sqlite_revision(path: Path) -> str | None:
    """The alembic revision stored in the SQLite file ``path``; ``None`` when it has no
    ``alembic_version`` row. Raises :class:`~sf_metadata.errors.StoreNotFound` when the file
    does not exist (it is not created) and ``sqlite3.Error`` when it cannot be read."""
    if not path.is_file():
        raise missing_store(str(path))
    connection = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True)
    try:
        found = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if found is None:
            return None
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None
    finally:
        connection.close()


def check_revision(revision: str | None, where: str) -> None:
    """Raise unless ``revision`` (of the store at ``where``) is :data:`HEAD_REVISION`.

    Raises :class:`~sf_metadata.errors.StoreNotFound` (no schema: never set up) or
    :class:`~sf_metadata.errors.StoreOutdated` (an older schema, not migrated by a read).
    """
    if revision is None:
        raise StoreNotFound(
            f"{where} holds no agent-provision store (no schema; nothing was created)",
            setting=Setting.DATABASE_URL,
        )
    if revision != HEAD_REVISION:
        raise StoreOutdated(
            f"the store at {where} has schema revision {revision}, not this release's "
            f"{HEAD_REVISION}, and a read does not migrate it"
        )
