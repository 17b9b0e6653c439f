"""GET /healthz, /readyz, /metrics (receiver.health, receiver.metrics)."""

from __future__ import annotations

import re
import warnings

from receiver.app import create_app
from receiver.db import make_engine
from receiver.settings import Settings
from tests.factories import make_notification

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def _sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_healthz_and_readyz(receiver) -> None:
    assert receiver.client.get("/healthz").text == "ok\n"
    ready = receiver.client.get("/readyz")
    assert ready.status_code == 200 and ready.text == "ready\n"


def test_readyz_is_503_on_a_store_that_is_not_migrated(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = make_engine(url)
    app = create_app(Settings(database_url=url), engine=engine)
    client = TestClient(app)  # no lifespan: the store stays unmigrated
    response = client.get("/readyz")
    assert response.status_code == 503 and response.text == "store not migrated\n"
    engine.dispose()


def test_readyz_is_503_when_the_store_does_not_answer(tmp_path) -> None:
    url = "postgresql+psycopg://nobody@/x?host=/nonexistent-socket-dir&connect_timeout=1"
    engine = make_engine(url)
    client = TestClient(create_app(Settings(database_url=url), engine=engine))
    response = client.get("/readyz")
    assert response.status_code == 503 and response.text == "store unavailable\n"
    engine.dispose()


def test_metrics_count_messages_notifications_and_acks_without_secrets(receiver) -> None:
    before = receiver.client.get("/metrics").text
    body = receiver.message(make_notification(), make_notification(IsActive=None))
    assert receiver.post(body).status_code == 200
    assert receiver.post(body, token="wrong").status_code == 401
    after = receiver.client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for name, labels, delta in [
        ("agent_provision_messages_total", 'outcome="processed"', 1),
        ("agent_provision_messages_total", 'outcome="unauthenticated"', 1),
        ("agent_provision_notifications_total", 'action="created"', 1),
        ("agent_provision_notifications_total", 'action="failed"', 1),
    ]:
        assert _sample(text, name, labels) - _sample(before, name, labels) == delta, name
    assert "agent_provision_ack_latency_seconds_bucket" in text
    assert "agent_provision_deploys_total" in text or "agent_provision_deploys" in text
    assert receiver.token not in text and receiver.name not in text


def test_metrics_work_in_multiprocess_mode(tmp_path) -> None:
    """serve sets PROMETHEUS_MULTIPROC_DIR before workers import prometheus-client: a child
    process counting into it is seen by a scrape in another process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = "from receiver import metrics\nmetrics.observe_message('processed', {'created': 3})\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    code = "from receiver import metrics\nprint(metrics.render(None).decode())\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    text = out.stdout.decode()
    assert 'agent_provision_notifications_total{action="created"} 3.0' in text
