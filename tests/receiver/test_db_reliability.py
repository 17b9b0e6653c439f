"""receiver.db under faults: PostgreSQL in another time zone with a far-future stamp
(issue 12, item 3), session-ended hooks outside the SQLite writer queue and the bounded
cross-process writer lock (issue 7, "Faults the review found"). Each failed before its fix."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import select

import receiver.db as db
from receiver.db import make_engine, migrate, transaction
from receiver.models import Agent
from receiver.sessions import SessionHooks, end_session, start_session
from sf_metadata.errors import StoreUnavailable
from tests.factories import sf_id

FAR_FUTURE = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _agent(org_id: str, n: int, stamp: datetime) -> Agent:
    return Agent(
        id=f"{n:032x}",
        organization_id=org_id,
        crm_id=sf_id("005", n),
        username=f"u{n}@acme.com",
        username_key=f"u{n}@acme.com",
        system_modstamp=stamp,
        data={"crmId": sf_id("005", n), "disabled": False},
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.postgres
def test_postgres_sessions_are_utc_and_far_future_stamps_round_trip(
    database_url: str, make_organization: Any
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    name = make_url(database_url).database
    admin = make_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # the database's default, east of UTC (+14)
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Kiritimati'"))
    admin.dispose()
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with transaction(engine) as session:
            org, _ = make_organization(session)
            session.add(_agent(org.id, 1, FAR_FUTURE))
        for _ in range(2):  # a fresh connection and a pooled one
            with transaction(engine, read_only=True) as session:
                zone = session.exec(text("SHOW TIME ZONE")).one()[0]  # type: ignore[call-overload]
                stamps = session.exec(select(Agent.system_modstamp)).all()
            assert zone == "UTC"
            assert stamps == [FAR_FUTURE]
    finally:
        engine.dispose()


# --- hooks after the writer queue -------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _write_in_another_thread(engine: Engine, make_organization: Any, bound_s: float) -> bool:
    """True if another thread's write transaction completed within ``bound_s``."""
    done = threading.Event()

    def other() -> None:
        with transaction(engine) as session:
            make_organization(session)
        done.set()

    worker = threading.Thread(target=other, daemon=True)
    worker.start()
    finished = done.wait(timeout=bound_s)
    worker.join(timeout=60)  # it finishes once the hook returned, at the latest
    return finished


def test_session_ended_hooks_run_after_the_writer_queue_is_released(
    sqlite_engine: Engine, make_organization: Any
) -> None:
    with transaction(sqlite_engine) as session:
        org, _ = make_organization(session)
        session.add(_agent(org.id, 1, NOW))
    with transaction(sqlite_engine) as session:
        started = start_session(session, organization_id=org.id, crm_id=sf_id("005", 1), now=NOW)
    assert started.session_id is not None
    hooks = SessionHooks()
    others_could_write: list[bool] = []

    @hooks.on_session_ended
    def slow_host_hook(*_args: str) -> None:
        others_could_write.append(_write_in_another_thread(sqlite_engine, make_organization, 5))

    with transaction(sqlite_engine) as session:
        assert end_session(session, session_id=started.session_id, now=NOW, hooks=hooks)
    assert others_could_write == [True]


def test_after_transaction_callbacks_run_only_after_a_commit(sqlite_engine: Engine) -> None:
    calls: list[str] = []
    with transaction(sqlite_engine) as session:
        assert db.after_transaction(session, lambda: calls.append("committed"))
        assert calls == []
    assert calls == ["committed"]
    with pytest.raises(RuntimeError):
        with transaction(sqlite_engine) as session:
            db.after_transaction(session, lambda: calls.append("rolled back"))
            raise RuntimeError("boom")
    assert calls == ["committed"]


# --- the cross-process writer lock is bounded ---------------------------------------------------

_HOLD = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n"
)


def test_a_writer_lock_held_by_another_process_answers_store_unavailable_in_time(
    sqlite_engine: Engine, make_organization: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "_SQLITE_BUSY_TIMEOUT_S", 0.3)
    lock_path = Path(str(sqlite_engine.url.database) + "-writer.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock_path)], stdout=subprocess.PIPE, text=True
    )
    outcome: list[BaseException | None] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        def write() -> None:
            try:
                with transaction(sqlite_engine) as session:
                    make_organization(session)
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 - recorded for the assertion
                outcome.append(error)

        worker = threading.Thread(target=write, daemon=True)
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive(), "the writer waited on the other process's lock forever"
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable)
    assert "locked" in outcome[0].message
    with transaction(sqlite_engine) as session:  # the queue is free again afterwards
        make_organization(session)


@pytest.mark.postgres
def test_the_webhook_keeps_acknowledging_a_far_future_user_in_a_non_utc_database(
    database_url: str, make_organization: Any
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    from receiver.app import create_app
    from receiver.organizations import webhook_path
    from receiver.settings import Settings
    from tests.factories import make_notification, make_outbound_message, make_user_fields
    from tests.receiver._harness import TestClient

    name = make_url(database_url).database
    admin = make_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Tokyo'"))
    admin.dispose()
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with transaction(engine) as session:
            org, token = make_organization(session)
            org_name, sf_org = org.id, org.salesforce_org_id
        app = create_app(Settings(database_url=database_url), engine=engine, clock=lambda: NOW)
        far = make_user_fields(SystemModstamp="9999-12-31T23:30:00.000Z")
        other = sf_id("005", 2)
        with TestClient(app, raise_server_exceptions=False) as client:
            for n in range(3):
                body = make_outbound_message(
                    [
                        make_notification(user_id=sf_id("005", 1), **far),
                        make_notification(user_id=other, **make_user_fields(LastName=f"N{n}")),
                    ],
                    organization_id=sf_org,
                )
                answer = client.post(
                    webhook_path(org_name),
                    params={"token": token},
                    content=body,
                    headers={"content-type": "text/xml; charset=UTF-8", "soapaction": '""'},
                )
                assert answer.status_code == 200, answer.text
        with transaction(engine, read_only=True) as session:
            stamps = dict(session.exec(select(Agent.crm_id, Agent.system_modstamp)).all())
        assert stamps[sf_id("005", 1)] == FAR_FUTURE
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_read_only_then_writable_again_answers_503_and_recovers(
    database_url: str, make_organization: Any
) -> None:
    """A database switched to read-only (as a primary demoted to standby answers writes):
    503 (StoreUnavailable), and the read-only sessions do not outlive it. Before, SQLSTATE
    25006 was an unexpected error (a 500) on every pooled connection opened meanwhile."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    name = make_url(database_url).database
    server = make_url(database_url).set(database="postgres")
    admin = make_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    engine = make_engine(database_url, pool_size=3, max_overflow=0)

    def set_read_only(on: bool) -> None:
        with admin.connect() as conn:
            value = "on" if on else "off"
            conn.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
            )

    def write() -> None:
        with transaction(engine) as session:
            make_organization(session)

    try:
        migrate(engine)
        write()
        set_read_only(True)
        engine.dispose()  # the pool's connections from now on open read-only
        barrier = threading.Barrier(3)

        def reader() -> None:
            with transaction(engine, read_only=True) as session:
                session.connection()
                barrier.wait(timeout=10)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        with pytest.raises(StoreUnavailable):
            write()
        set_read_only(False)
        failures = 0
        for _ in range(6):
            try:
                write()
            except StoreUnavailable:
                failures += 1
        assert failures == 0
    finally:
        engine.dispose()
        admin.dispose()
