"""receiver._sqlite_guard: a SQLite store deleted, replaced or read-only while serving
(issue 12, items 1 and 2). Each test failed before the guard: writes went on into the
unlinked file, and connections opened read-only stayed in the pool."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from receiver.db import make_engine, migrate, transaction
from sf_metadata.errors import StoreUnavailable
from tests.factories import make_notification, make_user_fields, sf_id
from tests.receiver._harness import MakeReceiver, fault_string


def _store(tmp_path: Path) -> tuple[Path, Engine]:
    path = tmp_path / "store" / "agent_provision.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    return path, engine


def _add_org(engine: Engine, make_organization: Any, name: str) -> None:
    with transaction(engine) as session:
        make_organization(session, name=name)


def _names_in_file(path: Path) -> set[str]:
    """Organization names in the file the path names now (a fresh, independent reader)."""
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM organization")}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path, engine = _store(tmp_path)
    try:
        yield path, engine
    finally:
        engine.dispose()


def test_a_deleted_store_refuses_writes_and_is_not_recreated(
    store: tuple[Path, Engine], make_organization: Any
) -> None:
    path, engine = store
    _add_org(engine, make_organization, "before")
    for leftover in path.parent.glob(path.name + "*"):
        if leftover.name.endswith((".db", "-wal", "-shm")):
            leftover.unlink()
    with pytest.raises(StoreUnavailable, match="unable to open|deleted or replaced"):
        _add_org(engine, make_organization, "after")
    with pytest.raises(StoreUnavailable):
        with transaction(engine, read_only=True) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    assert not path.exists(), "a new, empty store was created behind the server's back"


def test_a_replaced_store_is_written_where_the_path_points(
    store: tuple[Path, Engine], make_organization: Any, tmp_path: Path
) -> None:
    path, engine = store
    _add_org(engine, make_organization, "old")
    # Another volume mounted where the store was (here: the directory moved away and a
    # copy of it put in its place).
    moved = tmp_path / "old-volume"
    path.parent.rename(moved)
    path.parent.mkdir()
    with sqlite3.connect(moved / path.name) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    _add_org(engine, make_organization, "new")
    assert _names_in_file(path) == {"old", "new"}


def test_the_webhook_answers_503_for_a_deleted_store(
    make_receiver: MakeReceiver, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a SQLite file store only")
    receiver = make_receiver()
    user = sf_id("005", 1)
    first = receiver.post(receiver.message(make_notification(user_id=user, **make_user_fields())))
    assert first.status_code == 200
    path = Path(receiver.engine.url.database or "")
    path.unlink()
    later = receiver.post(
        receiver.message(make_notification(user_id=sf_id("005", 2), **make_user_fields()))
    )
    assert later.status_code == 503, later.text
    assert "unavailable" in fault_string(later)
    assert not path.exists()


# --- read-only, then writable again --------------------------------------------------------


def _set_read_only(path: Path, read_only: bool) -> None:
    """Make the store file read-only (or writable again) for this process: root writes
    through any file mode, so as root the file is made immutable (``chattr +i``)."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root without chattr: cannot make a file read-only")
        flag = "+i" if read_only else "-i"
        subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)
    else:
        os.chmod(path, 0o444 if read_only else 0o644)


def test_connections_opened_read_only_do_not_outlive_the_read_only_store(
    tmp_path: Path, make_organization: Any
) -> None:
    path = tmp_path / "store" / "agent_provision.db"
    engine = make_engine(f"sqlite:///{path}", pool_size=4, max_overflow=0)
    migrate(engine)
    names = (f"org-{n}" for n in range(100))
    try:
        _add_org(engine, make_organization, next(names))
        _set_read_only(path, True)
        try:
            assert not os.access(path, os.W_OK)
            engine.dispose()  # every connection from now on opens while read-only
            barrier = threading.Barrier(4)

            def reader() -> None:  # four at once: the whole pool opens read-only
                with transaction(engine, read_only=True) as session:
                    session.connection()
                    barrier.wait(timeout=10)

            threads = [threading.Thread(target=reader) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=20)
            with pytest.raises(StoreUnavailable, match="readonly"):
                _add_org(engine, make_organization, next(names))
        finally:
            _set_read_only(path, False)
        failures = 0
        for _ in range(8):
            try:
                _add_org(engine, make_organization, next(names))
            except StoreUnavailable:
                failures += 1
        assert failures == 0
    finally:
        engine.dispose()


# --- the write-ahead log deleted while serving (ATTACK finding 2) ----------------------------


def _crash_copy(path: Path, into: Path) -> Path:
    """What a restart after a crash (SIGKILL, OOM kill) finds: the files the path names now,
    the main file and its ``-wal`` (the ``-shm`` index is rebuilt from them), copied while
    the engine's connections stay open."""
    into.mkdir()
    for suffix in ("", "-wal"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            shutil.copyfile(source, into / source.name)
    return into / path.name


def _names_after_crash(path: Path, into: Path) -> set[str]:
    copy = _crash_copy(path, into)
    try:
        return _names_in_file(copy)
    except sqlite3.OperationalError:  # "no such table": not even the schema survived
        return set()


def _delete_wal(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink()


def test_writes_acknowledged_after_the_wal_was_deleted_survive_a_crash(
    tmp_path: Path, make_organization: Any
) -> None:
    path = tmp_path / "store" / "agent_provision.db"
    engine = make_engine(f"sqlite:///{path}", pool_size=3, max_overflow=0)
    migrate(engine)
    try:
        _add_org(engine, make_organization, "before")

        def reader() -> None:  # three at once: the pool holds three connections to the WAL
            with transaction(engine, read_only=True) as session:
                session.connection()
                barrier.wait(timeout=10)

        barrier = threading.Barrier(3)
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        _delete_wal(path)
        acknowledged = {"before"}
        for n in range(5):
            _add_org(engine, make_organization, f"after-{n}")  # raises = no Ack
            acknowledged.add(f"after-{n}")
        assert _names_after_crash(path, tmp_path / "crash") == acknowledged
        assert not _holds_deleted_wal()
    finally:
        engine.dispose()


def _holds_deleted_wal() -> bool:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return any(link.endswith(("-wal (deleted)", "-shm (deleted)")) for link in links)


def test_a_reader_holding_the_deleted_wal_delays_writers_with_503_not_a_lost_ack(
    store: tuple[Path, Engine], make_organization: Any, tmp_path: Path
) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd (Linux)")
    path, engine = store
    _add_org(engine, make_organization, "before")
    acknowledged = {"before"}
    reading, release = threading.Event(), threading.Event()

    def long_reader() -> None:
        with transaction(engine, read_only=True) as session:
            session.exec(text("SELECT count(*) FROM organization"))  # type: ignore[call-overload]
            reading.set()
            release.wait(timeout=20)

    thread = threading.Thread(target=long_reader)
    thread.start()
    try:
        assert reading.wait(timeout=10)
        _delete_wal(path)
        # no new connection while this process holds the deleted WAL: no Ack
        with pytest.raises(StoreUnavailable, match="write-ahead log"):
            _add_org(engine, make_organization, "while-held")
    finally:
        release.set()
        thread.join(timeout=20)
    # the reader's connection, checked in, checkpointed what was acknowledged before
    assert _names_after_crash(path, tmp_path / "crash-1") == acknowledged
    _add_org(engine, make_organization, "after")
    acknowledged.add("after")
    assert _names_after_crash(path, tmp_path / "crash-2") == acknowledged
