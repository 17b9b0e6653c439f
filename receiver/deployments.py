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

from deployer.kinds import DeploymentKind, DeploymentOutcome, Trigger
from receiver.models import Deployment, DeploymentCreate, DeploymentPublic

__all__ = [
    "INSTALLED_OUTCOMES",
    "UNSURE_OUTCOMES",
    "components_to_remove",
    "latest_deployments",
    "possibly_installed_triggers",
    "record_deployment",
]

#: Outcomes of a real deploy after which our components exist in the org (an inactive
#: flow is deployed all the same).
INSTALLED_OUTCOMES = tuple(o for o in DeploymentOutcome if o.installed)

#: Outcomes after which we cannot tell: the deploy was submitted and may have gone through
#: server-side (``timeout``: not done before our timeout; ``unknown``: Salesforce could not
#: be asked). For retiring purposes these count as installed.
UNSURE_OUTCOMES = tuple(o for o in DeploymentOutcome if o.unsure)


def record_deployment(
    session: Session,
    data: DeploymentCreate,
    *,
    now: datetime | None = None,
    endpoint: str | None = None,
    token_sha256: str | None = None,
) -> DeploymentPublic:
    """Insert one deployment row (``created_at`` = ``now``, UTC) and return it.
    ``endpoint`` (without its token) and ``token_sha256`` are what a deploy put in the
    Outbound Message (``None`` when it put none there)."""
    row = Deployment.model_validate(
        data,
        update={
            "created_at": (now or datetime.now(UTC)).astimezone(UTC),
            "endpoint": endpoint,
            "token_sha256": token_sha256,
        },
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


def possibly_installed_triggers(session: Session, organization_id: str) -> list[Trigger]:
    """The triggers (sorted by value) our deploys may have left in the org.

    A deploy that installed (``INSTALLED_OUTCOMES``) replaced the other trigger in the same
    run, so it leaves only its own; one whose end is unknown (``UNSURE_OUTCOMES``) may or
    may not have gone through, so it adds its own to what was there; a failed deploy rolled
    back (rollbackOnError) and changes nothing; a successful undeploy removed everything.
    """
    triggers: set[Trigger] = set()
    for row in _all(session, organization_id):
        if row.kind is DeploymentKind.DEPLOY and row.trigger:
            if row.outcome.installed:
                triggers = {row.trigger}
            elif row.outcome.unsure:
                triggers.add(row.trigger)
        elif row.kind is DeploymentKind.UNDEPLOY and row.outcome is DeploymentOutcome.SUCCEEDED:
            triggers = set()
    return sorted(triggers)


def components_to_remove(session: Session, organization_id: str) -> list[str]:
    """Every component any real deploy of ours may have left in the org, sorted: the union
    over all deploy rows, whatever the outcome (installed, failed, ``timeout`` or
    ``unknown``: those may have gone through server-side). Removing one that is already gone is harmless, so
    ``undeploy`` stays re-runnable."""
    names: set[str] = set()
    for row in _all(session, organization_id):
        if row.kind is DeploymentKind.DEPLOY:
            names.update(row.components)
    return sorted(names)
