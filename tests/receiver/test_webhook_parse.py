"""The webhook parses off the event loop, and a message with 200,000 namespace
declarations costs a parse linear in its size (issue 12 item 6), on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import receiver.webhook as webhook_module
from sf_metadata.outbound import OutboundMessage
from tests.factories import make_notification
from tests.receiver._harness import Receiver, assert_ack


def test_the_body_is_parsed_in_a_worker_thread_not_on_the_event_loop(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop: list[bool] = []
    real = webhook_module.parse_outbound_message  # type: ignore[attr-defined]

    def spy(data: bytes) -> OutboundMessage:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(data)

    monkeypatch.setattr(webhook_module, "parse_outbound_message", spy)
    note = make_notification()
    assert_ack(receiver.post(receiver.message(note)))
    assert on_loop == [False]
    assert set(receiver.agents()) == {note["record_id"]}


def _declare(body: bytes, count: int) -> bytes:
    declarations = b" ".join(b'xmlns:n%x="urn:%x"' % (i, i) for i in range(count))
    return body.replace(b"<soapenv:Envelope ", b"<soapenv:Envelope " + declarations + b" ", 1)


@pytest.mark.timeout(120)
def test_200000_namespace_declarations_are_parsed_and_applied(receiver: Any) -> None:
    notes = [make_notification() for _ in range(100)]
    body = _declare(receiver.message(*notes), 200_000)
    assert 3_000_000 < len(body) < 5 * 1024 * 1024
    assert_ack(receiver.post(body))
    assert set(receiver.agents()) == {n["record_id"] for n in notes}
