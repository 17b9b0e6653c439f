"""A fresh, empty store per run or test: a SQLite file in a temporary directory, or a new
database on the PostgreSQL server named by ``AGENT_PROVISION_TEST_POSTGRES_URL`` (the
variable tests/conftest.py and .ci/run use), dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench._pg import create_database, drop_database

__all__ = ["POSTGRES_ENV", "fresh_store", "postgres_server_url"]

POSTGRES_ENV = "AGENT_PROVISION_TEST_POSTGRES_URL"


def postgres_server_url() -> str | None:
    """The test PostgreSQL server URL from the environment, or ``None``."""
    return os.environ.get(POSTGRES_ENV) or None


@contextmanager
def fresh_store(kind: str, directory: Path) -> Iterator[str]:
    """Yield the URL of an empty store of ``kind`` (``"sqlite"`` or ``"postgresql"``).

    Raises ``LookupError`` for PostgreSQL when ``AGENT_PROVISION_TEST_POSTGRES_URL`` is unset.
    """
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'store.db'}"
        return
    server = postgres_server_url()
    if server is None:
        raise LookupError(f"{POSTGRES_ENV} is not set")
    url = create_database(server, prefix="soak")
    try:
        yield url
    finally:
        drop_database(server, url)
