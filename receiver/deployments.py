"""Recorded deployments (the ``deployment`` table of ``receiver/models.py``).

The deploy CLI (and later the dashboard) records every check-only, deploy and undeploy run:
when, trigger, API version, component names (``"Type:FullName"``), deploy id, outcome and
problems. ``undeploy`` reads back what it must remove; ``deploy`` reads which trigger we
deployed before, so it can retire the other one in the same run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from receiver.models import Deployment, DeploymentCreate, DeploymentPublic

__all__ = [
    "INSTALLED_OUTCOMES",
    "components_to_remove",
    "deployed_trigger",
    "latest_deployments",
    "record_deployment",
]

#: Outcomes of a real deploy after which our components exist in the org (an inactive
#: flow is deployed all the same).
INSTALLED_OUTCOMES = ("succeeded", "inactive-flow")


def record_deployment(
    session: Session, data: DeploymentCreate, *, now: datetime | None = None
) -> DeploymentPublic:
    """Insert one deployment row (``created_at`` = ``now``, UTC) and return it."""
    row = Deployment.model_validate(
        data, update={"created_at": (now or datetime.now(UTC)).astimezone(UTC)}
    )
    session.add(row)
    session.flush()
    return DeploymentPublic.model_validate(row)


def latest_deployments(
    session: Session, organization_id: str, *, limit: int = 20
) -> list[DeploymentPublic]:
    """The newest ``limit`` deployments of the organization, newest first."""
    rows = session.exec(
        select(Deployment)
        .where(Deployment.organization_id == organization_id)
        .order_by(col(Deployment.id).desc())
        .limit(limit)
    ).all()
    return [DeploymentPublic.model_validate(r) for r in rows]


def _all(session: Session, organization_id: str) -> Iterable[Deployment]:
    return session.exec(
        select(Deployment)
        .where(Deployment.organization_id == organization_id)
        .order_by(col(Deployment.id))
    ).all()


def deployed_trigger(session: Session, organization_id: str) -> str | None:
    """The trigger (``"workflow"``/``"flow"``) of our last real deploy that installed
    components, unless a successful undeploy came after it; else ``None``."""
    trigger: str | None = None
    for row in _all(session, organization_id):
        if row.kind == "deploy" and row.outcome in INSTALLED_OUTCOMES:
            trigger = row.trigger
        elif row.kind == "undeploy" and row.outcome == "succeeded":
            trigger = None
    return trigger


def components_to_remove(session: Session, organization_id: str) -> list[str]:
    """Every component any real deploy of ours may have left in the org, sorted: the union
    over deploys that installed components (and those that failed or timed out, which may
    have gone through server-side). Removing one that is already gone is harmless, so
    ``undeploy`` stays re-runnable."""
    names: set[str] = set()
    for row in _all(session, organization_id):
        if row.kind == "deploy":
            names.update(row.components)
    return sorted(names)
