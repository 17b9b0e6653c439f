"""Webhook tokens: generation, constant-time check, and encryption at rest.

Each organization has one secret webhook token (CONTRACT section 3):

- generated as ``secrets.token_urlsafe(32)`` (43 URL-safe characters, 256 bits);
- stored twice, never in plain text: its SHA-256 hex digest (``token_hash``), which the
  receiver compares with ``hmac.compare_digest`` (constant time), and its Fernet
  ciphertext (``token_encrypted``; AES-128-CBC + HMAC-SHA256, ``cryptography``), so that
  ``org show`` and a redeploy ("Refresh Webhook") can put the same token back in the
  endpoint URL.

The Fernet key:

1. ``AGENT_PROVISION_SECRET_KEY`` (``Settings.secret_key``) when set: a Fernet key
   (``Fernet.generate_key()``: 44 URL-safe base64 characters), or any other passphrase,
   from which a key is derived as ``urlsafe_b64encode(sha256(passphrase))``;
2. else a key file kept beside the store, created on first use with mode 0600:
   ``<database file>.key`` for SQLite (``agent_provision.db.key`` by default), and
   ``agent_provision.key`` in the working directory for other URLs (PostgreSQL).

Keep the key with the store's backups: without it stored tokens cannot be shown again
(``org rotate-token`` then issues a new one; the webhook must be refreshed). Neither the
token nor the key is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

from receiver.store_probe import plain_sqlite_path
from sf_metadata.errors import CredentialsError, Setting

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "KEY_FILE_NAME",
    "decrypt_token",
    "encrypt_token",
    "hash_token",
    "key_path_for",
    "load_key",
    "new_token",
    "token_matches",
]

#: Key file name for non-SQLite stores (in the working directory).
KEY_FILE_NAME = "agent_provision.key"


def new_token() -> str:
    """A fresh webhook token: ``secrets.token_urlsafe(32)``."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex digest (64 characters) of the token's UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str | None, token_hash: str) -> bool:
    """True if ``token`` hashes to ``token_hash``; constant time (``hmac.compare_digest``).
    ``None`` or ``""`` never matches."""
    if not token:
        return False
    return hmac.compare_digest(hash_token(token).encode("ascii"), token_hash.encode("ascii"))


def encrypt_token(token: str, key: bytes) -> str:
    """Fernet ciphertext (ASCII) of ``token`` under ``key``."""
    return Fernet(key).encrypt(token.encode("utf-8")).decode("ascii")


def decrypt_token(ciphertext: str, key: bytes) -> str:
    """The token back from :func:`encrypt_token`.

    Raises :class:`~sf_metadata.errors.CredentialsError` when ``key`` is not the key it was
    encrypted with (key file lost or replaced).
    """
    try:
        return Fernet(key).decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise CredentialsError(
            "the stored webhook token cannot be decrypted with this secret key: it is not "
            "the key the token was encrypted with (the key file was lost or replaced)",
            setting=Setting.SECRET_KEY,
        ) from None


def key_path_for(database_url: str | URL, *, cwd: Path | None = None) -> Path:
    """Where the key file is kept for ``database_url`` (see the module docstring)."""
    path = plain_sqlite_path(database_url) if isinstance(database_url, str) else None
    if path is None:
        from receiver.db import sqlite_database_path

        path = sqlite_database_path(database_url)
    if path is not None:
        return path.with_name(path.name + ".key")
    return (cwd or Path.cwd()).resolve() / KEY_FILE_NAME


def _key_from_secret(secret: str) -> bytes:
    raw = secret.strip().encode("utf-8")
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32 and len(raw) == 44:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def load_key(
    database_url: str | URL, secret_key: str | None = None, *, create: bool = True
) -> bytes:
    """The Fernet key for this store: from ``secret_key`` if given (``Settings.secret_key``
    unwrapped), else read from, or (``create``) created at, :func:`key_path_for` (mode 0600,
    created atomically so concurrent first uses agree on one key).

    Raises :class:`~sf_metadata.errors.CredentialsError` when the key file cannot be read
    or written, holds no valid key, or is missing and ``create`` is false.
    """
    if secret_key:
        return _key_from_secret(secret_key)
    path = key_path_for(database_url)
    if not create and not path.exists():
        raise CredentialsError(
            f"there is no key file at {path}: the stored webhook tokens cannot be decrypted",
            setting=Setting.SECRET_KEY,
        )
    try:
        if not path.exists():
            _create_key_file(path)
        data = path.read_bytes().strip()
    except OSError as error:
        raise CredentialsError(
            f"cannot use the key file {path}: {error.strerror or error}; fix its permissions "
            "or set AGENT_PROVISION_SECRET_KEY"
        ) from None
    try:
        Fernet(data)
    except ValueError:
        raise CredentialsError(
            f"the key file {path} does not hold a Fernet key: restore it from a backup"
        ) from None
    return data


def _create_key_file(path: Path) -> None:
    """Write a new key to a 0600 temp file, then hard-link it into place; if another
    process won the race, keep its key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".agent_provision_key.", dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, Fernet.generate_key() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
