"""receiver.db: engines, programmatic migrations, transactions and error mapping."""

from __future__ import annotations

import sqlite3
import threading
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, exc, inspect, text
from sqlalchemy.engine import Engine

from receiver.dashboard.tables import UNMODELLED_INDEXES, UNMODELLED_TABLES
from receiver.db import (
    current_revision,
    make_engine,
    migrate,
    normalise_url,
    sqlite_database_path,
    transaction,
)
from receiver.models import Organization
from sf_metadata.errors import Setting, StoreUnavailable, UsageError

TABLES = {
    "organization",
    "agent",
    "tombstone",
    "agent_session",
    "processed_notification",
    "provisioning_message",
    "provisioning_event",
    "deployment",
}


def _head() -> str:
    """The newest revision of the shipped migrations (the chain grows; 0001 is the first)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from receiver.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None and head != "0001"
    return head


def test_migrate_creates_every_table_and_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        migrate(engine)
        migrate(engine)
        assert current_revision(engine) == _head()
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_match_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from receiver.models import metadata

    with engine.connect() as conn, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (it says so in a warning, then skips them).
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # SQLite cannot reflect the expression index (organization_id, id DESC) faithfully.
    diff = [
        d
        for d in diff
        if not (
            engine.dialect.name == "sqlite"
            and d[0] in ("add_index", "remove_index")
            and d[1].name == "ix_provisioning_message_organization_id_id"
        )
        # Expression indexes the metadata cannot describe portably (created by migrations).
        and not (d[0] == "remove_index" and d[1].name in UNMODELLED_INDEXES)
        # SQLite-only search tables (FTS5 and its document table), created by migrations.
        and not (
            d[0] in ("remove_table", "remove_index")
            and (d[1].table if d[0] == "remove_index" else d[1]).name in UNMODELLED_TABLES
        )
    ]
    assert diff == []


def test_migrate_works_from_any_working_directory(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine(database_url)
    try:
        migrate(engine)
        assert current_revision(engine) == _head()
    finally:
        engine.dispose()


def test_concurrent_migrations_agree(database_url: str) -> None:
    engines = [make_engine(database_url) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def run(e: Engine) -> None:
        try:
            barrier.wait()
            migrate(e)
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert current_revision(engines[0]) == _head()
    finally:
        for e in engines:
            e.dispose()


def test_sqlite_engine_creates_parent_dir_and_sets_pragmas(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "store.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        migrate(engine)
        assert db.exists()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def test_sqlite_relative_url_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_database_path("sqlite:///agent_provision.db") == tmp_path / "agent_provision.db"
    assert sqlite_database_path("sqlite://") is None
    assert sqlite_database_path("postgresql+psycopg://u@h/db") is None


def test_sqlite_write_transactions_begin_immediate(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, params, context, executemany):
        statements.append(statement)

    try:
        migrate(engine)
        statements.clear()
        with transaction(engine) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        with transaction(engine, read_only=True) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    finally:
        engine.dispose()
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]


def test_sqlite_write_lock_makes_a_second_writer_wait(tmp_path: Path) -> None:
    """While one write transaction is open (BEGIN IMMEDIATE holds the write lock), another
    connection cannot start writing: with a tiny timeout it reports the lock."""
    path = tmp_path / "s.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        with transaction(engine) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        engine.dispose()


def test_postgres_urls_are_rewritten_to_psycopg() -> None:
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    engine = make_engine("postgresql://u@h/db")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping
    finally:
        engine.dispose()


def test_unparsable_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not a SQLAlchemy URL") as caught:
        make_engine("not a url")
    assert caught.value.setting is Setting.DATABASE_URL


@pytest.mark.parametrize(
    "url", ["nosuch://x", "mysql://user:pw@127.0.0.1/db", "sqlite+nosuch:///store.db"]
)
def test_unsupported_backend_or_driver_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="unsupported database URL") as caught:
        make_engine(url)
    assert "sqlite:///PATH" in caught.value.message and "pw" not in caught.value.message
    assert "--" not in caught.value.message and caught.value.setting is Setting.DATABASE_URL


def test_transaction_commits_at_the_end(engine: Engine, make_organization, key: bytes) -> None:
    with transaction(engine) as session:
        make_organization(session, name="kept")
    with transaction(engine, read_only=True) as session:
        assert session.get(Organization, "kept") is not None


def test_transaction_rolls_back_when_the_block_raises(engine: Engine, make_organization) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as session:
        make_organization(session, name="gone")
        raise RuntimeError("boom")
    with transaction(engine) as session:
        assert session.get(Organization, "gone") is None


def test_operational_error_becomes_store_unavailable_without_sql_parameters(
    engine: Engine, make_organization
) -> None:
    calls = {"n": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _fail(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT"):
            calls["n"] += 1
            raise exc.OperationalError(statement, params, Exception("server closed the connection"))

    with pytest.raises(StoreUnavailable) as caught, transaction(engine) as session:
        make_organization(session, name="secretive")
    event.remove(engine, "before_cursor_execute", _fail)
    assert calls["n"] == 1
    assert "server closed the connection" in str(caught.value)
    assert "token" not in str(caught.value) and "INSERT" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with transaction(engine) as session:
        assert session.get(Organization, "secretive") is None


def test_unreachable_postgres_is_store_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"postgresql+psycopg://nobody@/db?host={tmp_path}&connect_timeout=1")
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            migrate(engine)
        with pytest.raises(StoreUnavailable), transaction(engine) as session:
            session.get(Organization, "x")
    finally:
        engine.dispose()


def test_sqlite_directory_that_cannot_be_created_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="cannot create the directory") as caught:
        make_engine(f"sqlite:///{blocker / 'sub' / 'x.db'}")
    assert caught.value.setting is Setting.DATABASE_URL


def test_sqlite_file_that_is_not_a_database_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a SQLite database" * 100)
    engine = make_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(StoreUnavailable):
            migrate(engine)
    finally:
        engine.dispose()


def test_migration_0019_gives_earlier_sync_jobs_their_own_kind(
    database_url: str, make_organization
) -> None:
    """A Sync now of an earlier release was a ``reconcile`` job whose first step was
    ``reading chosen users``: after 0019 it is a ``reconcile-users`` job, so the Reconcile
    page's Last run is the organization's reconcile; a downgrade makes both ``reconcile``."""
    from alembic import command

    from receiver.db import _alembic_config
    from receiver.job_tables import Job

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "0018_provisioning_message_source")
        with transaction(engine) as session:
            organization, _ = make_organization(session, name="acme")
            org = organization.id
        at = "2026-12-03T08:00:00+00:00"
        jobs = {
            "sync": [{"name": "reading chosen users", "at": at}, {"name": "planned", "at": at}],
            "full": [{"name": "reading users", "at": at}],
            "empty": [],
        }
        with engine.begin() as connection:
            for steps in jobs.values():
                connection.execute(
                    Job.__table__.insert().values(  # type: ignore[attr-defined]
                        organization_id=org,
                        kind="reconcile",
                        state="succeeded",
                        owner="host:1:abcd",
                        steps=steps,
                        result={},
                        problems=[],
                        created_at=datetime(2026, 12, 3, 8, tzinfo=UTC),
                        started_at=datetime(2026, 12, 3, 8, tzinfo=UTC),
                    )
                )
        migrate(engine)

        def kinds() -> list[str]:
            with engine.connect() as connection:
                return [
                    row.kind for row in connection.execute(text("SELECT kind FROM job ORDER BY id"))
                ]

        assert kinds() == ["reconcile-users", "reconcile", "reconcile"]
        with engine.begin() as connection:
            command.downgrade(_alembic_config(connection), "0018_provisioning_message_source")
        assert kinds() == ["reconcile", "reconcile", "reconcile"]
    finally:
        engine.dispose()
