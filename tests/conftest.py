"""Shared fixtures: a store on SQLite and on PostgreSQL, and factories.

- ``database_url``: parametrized ``sqlite`` (a file in ``tmp_path``; with ``engine``, a copy
  of a store migrated once per session, so SQLite tests do not run the migrations) and
  ``postgresql``
  (marked ``postgres``): a fresh database per test on the server named by
  ``AGENT_PROVISION_TEST_POSTGRES_URL`` (e.g.
  ``postgresql+psycopg://postgres@/postgres?host=/tmp/pg``), dropped afterwards. When the
  variable is unset the PostgreSQL params are skipped, except with ``CI=true``: then they
  fail, so CI cannot go green without PostgreSQL. A test that also uses ``engine`` gets a
  database migrated once per session (per xdist worker) and emptied after each test
  (``TRUNCATE ... RESTART IDENTITY``: every table, identities restarted); otherwise it gets
  a new, empty database, dropped afterwards.
- ``engine``: a migrated engine on ``database_url``.
- ``key``: a fresh Fernet key. ``now``: a fixed aware UTC datetime.
- ``make_organization(session, **kw) -> (Organization, token)``: registers an organization
  (defaults: a unique name, a valid 00D id, ``enabled=True``).

``pytest --sf-org ALIAS_OR_URL [--sf-record-mode once|new_episodes|all]`` records the
cassette tests from a real org into ``cassettes/recorded/`` through the cassettes' scrubber
(``tests/deployer/_vcr.py``, ``cassettes/README.md``); without it nothing reaches the
network (vcrpy ``record_mode="none"``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session

import receiver.dashboard.tables  # noqa: F401  (its tables are emptied after each test)
import receiver.feature_switch  # noqa: F401
import receiver.job_tables  # noqa: F401  (registers job, job_lease)
import receiver.salesforce_connection  # noqa: F401  (registers salesforce_connection)
import receiver.salesforce_oauth  # noqa: F401  (registers oauth_state)
from receiver.db import make_engine, migrate
from receiver.models import Organization, metadata
from receiver.organizations import add_organization, set_enabled
from receiver.provisioning_tables import FailedNotification  # noqa: F401 - registers the tables
from receiver.reconcile import tables as _reconcile_tables  # noqa: F401  (registers reconcile_plan)
from receiver.settings import psycopg_url
from sf_metadata.ids import checksum_suffix
from tests.deployer._vcr import RECORD_MODES, start_recording
from tests.sqlite_template import template_store

POSTGRES_ENV = "AGENT_PROVISION_TEST_POSTGRES_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("salesforce", "recording cassettes from a real Salesforce org")
    group.addoption(
        "--sf-org",
        metavar="ALIAS_OR_URL",
        default=None,
        help="record the cassette tests from this org (an sf CLI alias, or an https:// "
        "instance URL with SF_ACCESS_TOKEN) into cassettes/recorded/; default: play back only",
    )
    group.addoption(
        "--sf-record-mode",
        choices=RECORD_MODES,
        default="once",
        help="vcrpy record mode with --sf-org (default once: record cassettes not yet recorded)",
    )


def pytest_configure(config: pytest.Config) -> None:
    org = config.getoption("--sf-org")
    if org:
        start_recording(org, config.getoption("--sf-record-mode"))


_org_counter = itertools.count(1)


def _server_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {POSTGRES_ENV} is not set: CI must run the PostgreSQL tests")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    return psycopg_url(url)


def _database_url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _admin_engine(server_url: str) -> Engine:
    return create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _create_database(server_url: str, name: str, template: str = "template0") -> None:
    admin = _admin_engine(server_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    finally:
        admin.dispose()


def _drop_database(server_url: str, name: str) -> None:
    admin = _admin_engine(server_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def _postgres_migrated() -> Iterator[tuple[str, str]]:
    """(server URL, name of a migrated database) for this test session (one per xdist
    worker), dropped at the end. Tests using ``engine`` share it; it is emptied after each
    (``TRUNCATE ... RESTART IDENTITY``), which is ten times faster than ``CREATE DATABASE``."""
    server_url = _server_url()
    name = f"aap_test_{uuid.uuid4().hex[:12]}"
    _create_database(server_url, name, "template0")
    try:
        engine = make_engine(_database_url(server_url, name), poolclass=NullPool)
        try:
            migrate(engine)
        finally:
            engine.dispose()
        yield server_url, name
    finally:
        _drop_database(server_url, name)


def _empty_tables(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def _sqlite_template() -> Path:
    """A SQLite store migrated once for this test session (one per xdist worker,
    ``tests/sqlite_template.py``); tests using ``engine`` get a copy of the file, so no
    SQLite test runs the migrations again."""
    return template_store()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A store URL on each backend (see the module docstring): SQLite, a new file; PostgreSQL,
    a new empty database, or (when the test also uses ``engine``) the session's migrated
    database, emptied afterwards."""
    if request.param == "sqlite":
        path = tmp_path / "store" / "agent_provision.db"
        if "engine" in request.fixturenames:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    if "engine" in request.fixturenames:
        server_url, name = request.getfixturevalue("_postgres_migrated")
        url = _database_url(server_url, name)
        try:
            yield url
        finally:
            _empty_tables(url)
        return
    server_url = _server_url()
    name = f"aap_test_{uuid.uuid4().hex[:12]}"
    _create_database(server_url, name, "template0")
    try:
        yield _database_url(server_url, name)
    finally:
        _drop_database(server_url, name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine on ``database_url``; disposed after the test."""
    eng = make_engine(database_url)
    try:
        migrate(eng)
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def key() -> bytes:
    """A fresh Fernet key."""
    return Fernet.generate_key()


@pytest.fixture
def now() -> datetime:
    """A fixed aware UTC instant."""
    return datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def org_sf_id(n: int) -> str:
    """A valid 18-character 00D id for organization number ``n``."""
    id15 = f"00DAb{n:010d}"
    return id15 + checksum_suffix(id15)


MakeOrganization = Callable[..., tuple[Organization, str]]


@pytest.fixture
def make_organization(key: bytes, now: datetime) -> MakeOrganization:
    """Factory: ``make_organization(session, *, name=None, salesforce_org_id=None,
    base_url="http://127.0.0.1:8000", enabled=True) -> (Organization, token)``; flushes,
    does not commit."""

    def factory(
        session: Session,
        *,
        name: str | None = None,
        salesforce_org_id: str | None = None,
        base_url: str = "http://127.0.0.1:8000",
        enabled: bool = True,
    ) -> tuple[Organization, str]:
        n = next(_org_counter)
        org, token = add_organization(
            session,
            name=name or f"org-{n}",
            salesforce_org_id=salesforce_org_id or org_sf_id(n),
            base_url=base_url,
            key=key,
            now=now,
        )
        if enabled:
            org = set_enabled(session, name=org.id, enabled=True, now=now)
        return org, token

    return factory
