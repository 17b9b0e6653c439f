"""The webhook runs a message's transaction again when PostgreSQL aborts it to break a
deadlock or a serialization conflict (SQLSTATE 40P01 / 40001, ``TransactionConflict``),
a bounded number of times, before answering 503 (issue 11 item 5). The conflict is
injected on the first ``INSERT INTO provisioning_event`` statements, on both stores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, exc

from receiver.webhook import CONFLICT_ATTEMPTS
from tests.factories import make_notification
from tests.receiver._harness import Receiver, assert_ack, fault_string


class _Deadlock(Exception):
    sqlstate = "40P01"

    def __str__(self) -> str:
        return "deadlock detected"


def _conflicts(receiver: Receiver, times: int) -> Any:
    left = [times]

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO PROVISIONING_EVENT") and left[0]:
            left[0] -= 1
            raise exc.OperationalError(statement, {}, _Deadlock())

    event.listen(receiver.engine, "before_cursor_execute", before)
    return before


def test_a_conflict_is_run_again_and_acknowledged_once_applied(receiver: Receiver) -> None:
    body = receiver.message(make_notification(), make_notification())
    hook = _conflicts(receiver, CONFLICT_ATTEMPTS - 1)
    try:
        assert_ack(receiver.post(body))
    finally:
        event.remove(receiver.engine, "before_cursor_execute", hook)
    assert len(receiver.agents()) == 2
    assert receiver.actions() == ["created"] * 2  # applied once, logged once


def test_conflicts_every_time_are_503_with_nothing_applied(receiver: Receiver) -> None:
    body = receiver.message(make_notification())
    hook = _conflicts(receiver, CONFLICT_ATTEMPTS)
    try:
        response = receiver.post(body)
    finally:
        event.remove(receiver.engine, "before_cursor_execute", hook)
    assert response.status_code == 503
    assert "unavailable" in fault_string(response)
    assert receiver.agents() == {}
    assert receiver.log() == []
