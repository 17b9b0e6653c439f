"""``org url`` without SQLAlchemy: the webhook URL of an organization read from a plain
SQLite store with the standard library's ``sqlite3`` (issue 7: the CLI answers in under
0.3 s; ``bench/cli_startup.py`` measures it).

:func:`quick_webhook_url` answers only where it can be exact: a plain ``sqlite:///PATH``
URL (``receiver.store_probe.plain_sqlite_path``); for any other URL it returns ``None`` and
the CLI takes the SQLAlchemy path (``receiver.organizations``), which gives the same
answer. It reads like every command that only reads: nothing is created or migrated, the
store must be at :data:`receiver.store_probe.HEAD_REVISION`, the key is read, never
generated (``receiver.secrets.load_key(create=False)``). The one query reads the
``organization`` table of ``receiver.models.Organization`` (``id``, ``base_url``,
``token_encrypted``); ``tests/cli/test_quick_read.py`` checks both paths agree.
"""

from __future__ import annotations

import sqlite3

from receiver.org_address import webhook_url_for
from receiver.secrets import decrypt_token, load_key
from receiver.store_probe import check_revision, plain_sqlite_path, sqlite_revision
from sf_metadata.errors import OrganizationNotFound, StoreUnavailable

__all__ = ["quick_webhook_url"]

_BUSY_TIMEOUT_S = 30


def quick_webhook_url(database_url: str, name: str, secret_key: str | None) -> str | None:
    """The webhook URL (token included) of organization ``name`` in the store at
    ``database_url``, or ``None`` when the URL is not a plain SQLite file URL.

    Raises :class:`~sf_metadata.errors.StoreNotFound`,
    :class:`~sf_metadata.errors.StoreOutdated`,
    :class:`~sf_metadata.errors.OrganizationNotFound`,
    :class:`~sf_metadata.errors.CredentialsError` (no key, or not the token's key) and
    :class:`~sf_metadata.errors.StoreUnavailable` (the file cannot be read).
    """
    path = plain_sqlite_path(database_url)
    if path is None:
        return None
    try:
        check_revision(sqlite_revision(path), str(path))
        connection = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_S)
        try:
            row = connection.execute(
                "SELECT base_url, token_encrypted FROM organization WHERE id = ?", (name,)
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise StoreUnavailable(
            f"the store {path} cannot be read ({type(error).__name__}: {error})"
        ) from None
    if row is None:
        raise OrganizationNotFound(f"organization {name!r} is not registered")
    key = load_key(database_url, secret_key, create=False)
    return webhook_url_for(str(row[0]), name, decrypt_token(str(row[1]), key))
