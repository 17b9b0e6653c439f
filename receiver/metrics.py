"""Prometheus metrics of the receiver (prometheus-client), multi-process safe.

``agent-provision serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory before
uvicorn starts its workers (prometheus-client "Multiprocess Mode"): each worker writes its
samples to files there and ``GET /metrics`` merges them, so a scrape sees the whole server
whichever worker answers. Without that variable (tests, an app built in-process) the
process's default registry is used.

========================================  =========  ==========================================
metric                                    type       labels
========================================  =========  ==========================================
agent_provision_messages_total            counter    ``outcome``: processed, ignored, empty,
                                                     rejected (after the token check),
                                                     unauthenticated (404/401), unavailable
                                                     (503), error (500)
agent_provision_notifications_total       counter    ``action``: created, updated, ...
agent_provision_ack_latency_seconds       histogram  (none): request start to Ack, 200 only
agent_provision_deploys_total             counter    ``kind``, ``outcome``: read from the store's
                                                     ``deployment`` table at scrape time (deploys
                                                     run by the CLI count too)
========================================  =========  ==========================================

No label holds an organization name, a username, a token or a secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MULTIPROC_ENV",
    "observe_ack",
    "observe_message",
    "render",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES = Counter(
    "agent_provision_messages",
    "Outbound Messages received, by outcome.",
    ["outcome"],
)
NOTIFICATIONS = Counter(
    "agent_provision_notifications",
    "Notifications decided, by action.",
    ["action"],
)
ACK_LATENCY = Histogram(
    "agent_provision_ack_latency_seconds",
    "Seconds from the start of an Outbound Message request to its Ack.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def observe_message(outcome: str, counts: Mapping[Any, int] | None = None) -> None:
    """Count one message with ``outcome`` and its notifications per action (keys are
    ``Action`` members or strings)."""
    MESSAGES.labels(outcome=outcome).inc()
    for action, n in (counts or {}).items():
        if n:
            NOTIFICATIONS.labels(action=str(getattr(action, "value", action))).inc(n)


def observe_ack(seconds: float) -> None:
    """Record the latency of one Ack."""
    ACK_LATENCY.observe(seconds)


class _DeployCollector(Collector):
    """``agent_provision_deploys_total`` from the store (one GROUP BY of a small table)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def collect(self) -> Iterable[CounterMetricFamily]:
        import sqlalchemy as sa

        from receiver.db import transaction
        from receiver.models import Deployment

        family = CounterMetricFamily(
            "agent_provision_deploys", "Deploys recorded in the store.", labels=["kind", "outcome"]
        )
        table = Deployment.__table__  # type: ignore[attr-defined]
        try:
            with transaction(self._engine, read_only=True) as session:
                rows = session.execute(
                    sa.select(table.c.kind, table.c.outcome, sa.func.count()).group_by(
                        table.c.kind, table.c.outcome
                    )
                ).all()
        except Exception:  # noqa: BLE001 - a scrape still answers while the store is down
            rows = []
        for kind, outcome, count in rows:
            family.add_metric([str(kind), str(outcome)], float(count))
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []


def render(engine: Any | None) -> bytes:
    """The text exposition of every metric (merged across workers in multi-process mode)
    plus the deploy counts of the store behind ``engine`` (none without one, or while the
    store does not answer)."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    if engine is None:
        return output
    deploys = CollectorRegistry(auto_describe=False)
    deploys.register(_DeployCollector(engine))
    return output + generate_latest(deploys)
