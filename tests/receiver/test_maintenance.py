"""receiver.maintenance: pruning in batches, off the request path, run by the app's
lifespan (issue 7 review weakness 10, issue 11 item 6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import select

import receiver.maintenance as maintenance
from receiver.app import create_app
from receiver.db import insert_rows, transaction
from receiver.maintenance import (
    prune_processed_ids,
    prune_provisioning_log,
    run_maintenance,
)
from receiver.models import ProcessedNotification, ProvisioningEvent, ProvisioningMessage
from receiver.organizations import webhook_path
from receiver.outcomes import MessageOutcome
from receiver.periodic import periodic_tasks
from receiver.scheduler import Scheduler
from receiver.settings import Settings
from tests.factories import make_notification, make_outbound_message, make_user_fields, sf_id
from tests.receiver._harness import NOW, TestClient

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
                organization_id=org_id,
                received_at=at,
                outcome=MessageOutcome.PROCESSED,
                notification_count=1,
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
    engine: Engine, database_url: str, make_organization: Any
) -> None:
    with transaction(engine) as session:
        org, token = make_organization(session)
        name, sf_org = org.id, org.salesforce_org_id
    _processed(engine, name, 5, OLD)
    app = create_app(
        Settings(database_url=database_url), engine=engine, clock=lambda: NOW, run_scheduler=False
    )
    body = make_outbound_message(
        [make_notification(user_id=sf_id("005", 1), **make_user_fields())], organization_id=sf_org
    )
    with TestClient(app) as client:
        answer = client.post(
            webhook_path(name),
            params={"token": token},
            content=body,
            headers={"content-type": "text/xml; charset=UTF-8", "soapaction": '""'},
        )
    assert answer.status_code == 200
    assert _count(engine, ProcessedNotification) == 6  # the 5 old ones wait for maintenance


def test_the_scheduler_runs_store_maintenance_once_per_interval_across_workers(
    engine: Engine, make_organization: Any
) -> None:
    org_id = _org(engine, make_organization)
    _processed(engine, org_id, 5, OLD)
    _log(engine, org_id, 2, OLD)
    settings = Settings(database_url=str(engine.url))
    (task,) = [t for t in periodic_tasks(settings) if t.name == "store-maintenance"]
    assert task.every == maintenance.PRUNE_INTERVAL
    first, second = (Scheduler(engine, [task], clock=lambda: NOW) for _ in range(2))
    assert first.run_due() == ["store-maintenance"]
    assert _count(engine, ProcessedNotification) == 0
    assert _count(engine, ProvisioningMessage) == 0
    assert second.run_due() == []  # another worker within the interval: not again
