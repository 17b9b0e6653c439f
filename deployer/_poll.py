"""Submit a deploy and poll checkDeployStatus with backoff and an overall timeout.

Backoff: the first wait is ``first_interval`` seconds, each next one 1.5 times longer, up to
``max_interval`` (CumulusCI and the Salesforce CLI poll from 1 s upward, reference
``metadata-deployer-anchors.md`` section 3). Sleep and clock are injected so tests run
instantly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deployer.client import OrgApi
from deployer.envelopes import (
    DeployResult,
    parse_check_deploy_status,
    parse_deploy_response,
    render_check_deploy_status,
    render_deploy,
)

__all__ = ["Timing", "submit", "wait"]


@dataclass(frozen=True)
class Timing:
    """Polling parameters, in seconds; ``sleep`` and ``clock`` (monotonic) injectable."""

    timeout: float = 1800.0
    first_interval: float = 1.0
    max_interval: float = 15.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    clock: Callable[[], float] = field(default=time.monotonic)


def submit(
    client: OrgApi, zip_bytes: bytes, *, check_only: bool, ignore_warnings: bool = False
) -> str:
    """Send ``deploy``; return the deploy id (``0Af…``)."""
    body = client.metadata_call(
        "deploy",
        lambda session_id: render_deploy(
            session_id, zip_bytes, check_only=check_only, ignore_warnings=ignore_warnings
        ),
    )
    return parse_deploy_response(body)


def wait(client: OrgApi, deploy_id: str, timing: Timing) -> DeployResult | None:
    """Poll until ``done``; ``None`` when ``timing.timeout`` passed first."""
    deadline = timing.clock() + timing.timeout
    interval = timing.first_interval
    while True:
        body = client.metadata_call(
            "checkDeployStatus",
            lambda session_id: render_check_deploy_status(session_id, deploy_id),
        )
        result = parse_check_deploy_status(body)
        if result.done:
            return result
        remaining = deadline - timing.clock()
        if remaining <= 0:
            return None
        timing.sleep(min(interval, remaining))
        interval = min(interval * 1.5, timing.max_interval)
