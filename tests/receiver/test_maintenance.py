"""receiver.maintenance: pruning in batches, off the request path, run by the app's
lifespan (issue 7 review weakness 10, issue 11 item 6)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import select

import receiver.maintenance as maintenance
from receiver.context import ReceiverContext
from receiver.db import insert_rows, transaction
from receiver.maintenance import (
    maintenance_task,
    prune_processed_ids,
    prune_provisioning_log,
    run_maintenance,
)
from receiver.models import ProcessedNotification, ProvisioningEvent, ProvisioningMessage
from receiver.settings import Settings
from tests.factories import make_notification, make_user_fields, sf_id
from tests.receiver._harness import NOW, MakeReceiver, TestClient

OLD = NOW - timedelta(days=200)


def _org(engine: Engine, make_organization: Any) -> str:
    with transaction(engine) as session:
        org, _ = make_organization(session)
    return str(org.id)


def _processed(engine: Engine, org_id: str, count: int, at: Any, start: int = 9_000_000) -> None:
    with transaction(engine) as session:
        insert_rows(
            session,
            ProcessedNotification,
            [
                {"organization_id": org_id, "notification_id": sf_id("04l", n), "processed_at": at}
                for n in range(start, start + count)
            ],
        )


def _log(engine: Engine, org_id: str, count: int, at: Any) -> None:
    with transaction(engine) as session:
        for _ in range(count):
            message = ProvisioningMessage(
                organization_id=org_id, received_at=at, outcome="processed", notification_count=1
            )
            session.add(message)
            session.flush()
            session.add(
                ProvisioningEvent(
                    message_id=message.id,  # type: ignore[arg-type]
                    position=0,
                    action="created",
                    reason="new agent",
                )
            )


def _count(engine: Engine, model: Any) -> int:
    with transaction(engine, read_only=True) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


class _Commits:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, _conn: Any) -> None:
        self.count += 1


def test_processed_ids_are_pruned_in_batches_oldest_first(
    engine: Engine, make_organization: Any
) -> None:
    org_id = _org(engine, make_organization)
    _processed(engine, org_id, 25, OLD)
    _processed(engine, org_id, 3, NOW, start=9_100_000)
    commits = _Commits(engine)
    assert prune_processed_ids(engine, older_than=NOW - timedelta(days=7), batch_size=10) == 25
    assert commits.count == 3  # 10 + 10 + 5: each batch its own transaction
    with transaction(engine, read_only=True) as session:
        left = sorted(session.exec(select(ProcessedNotification.notification_id)).all())
    assert left == [sf_id("04l", n) for n in range(9_100_000, 9_100_003)]


def test_the_provisioning_log_is_pruned_with_its_events(
    engine: Engine, make_organization: Any
) -> None:
    org_id = _org(engine, make_organization)
    _log(engine, org_id, 7, OLD)
    _log(engine, org_id, 2, NOW)
    assert prune_provisioning_log(engine, older_than=NOW - timedelta(days=90), batch_size=3) == 7
    assert _count(engine, ProvisioningMessage) == 2
    assert _count(engine, ProvisioningEvent) == 2


def test_run_maintenance_applies_each_retention(engine: Engine, make_organization: Any) -> None:
    org_id = _org(engine, make_organization)
    _processed(engine, org_id, 4, NOW - timedelta(days=10))
    _log(engine, org_id, 3, NOW - timedelta(days=10))
    result = run_maintenance(
        engine,
        now=NOW,
        processed_retention=timedelta(days=7),
        log_retention=timedelta(days=90),
    )
    assert (result.processed_ids, result.log_messages) == (4, 0)
    assert _count(engine, ProvisioningMessage) == 3


def test_the_webhook_does_not_prune_on_the_request_path(
    make_receiver: MakeReceiver, engine: Engine
) -> None:
    receiver = make_receiver()
    _processed(engine, receiver.name, 5, OLD)
    body = receiver.message(make_notification(user_id=sf_id("005", 1), **make_user_fields()))
    assert receiver.post(body).status_code == 200
    assert _count(engine, ProcessedNotification) == 6  # the 5 old ones wait for maintenance


def test_the_lifespan_runs_maintenance_in_the_background(
    make_receiver: MakeReceiver, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "FIRST_RUN_DELAY", timedelta(0))
    receiver = make_receiver()
    _processed(engine, receiver.name, 5, OLD)
    _log(engine, receiver.name, 2, OLD)
    with TestClient(receiver.app):  # a second lifespan, with the monkeypatched delay
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            _count(engine, ProcessedNotification) or _count(engine, ProvisioningMessage)
        ):
            time.sleep(0.02)
    assert _count(engine, ProcessedNotification) == 0
    assert _count(engine, ProvisioningMessage) == 0


def test_a_failed_run_is_logged_and_the_loop_goes_on(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from receiver.db import make_engine

    missing = make_engine(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    context = ReceiverContext(
        settings=Settings(database_url="sqlite://"),
        engine=missing,
        clock=lambda: NOW,
        hooks=None,
    )

    async def scenario() -> bool:
        async with maintenance_task(
            context, first_delay=timedelta(0), interval=timedelta(seconds=0.01)
        ) as task:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and caplog.text.count("maintenance failed") < 2:
                await asyncio.sleep(0.01)
            return not task.done()

    with caplog.at_level("WARNING"):
        assert asyncio.run(scenario())
    assert caplog.text.count("store maintenance failed") >= 2
    assert context.maintenance.last_prune is None
    missing.dispose()
