"""``receiver/deployments.py``: what undeploy removes and which triggers may be installed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlmodel import Session

from deployer.kinds import DeploymentKind, DeploymentOutcome, Trigger
from receiver.db import make_engine, migrate
from receiver.deployments import (
    components_to_remove,
    latest_deployments,
    possibly_installed_triggers,
    record_deployment,
)
from receiver.models import DeploymentCreate
from receiver.organizations import add_organization

OM = "WorkflowOutboundMessage:User.OM"
RULE = "WorkflowRule:User.Rule"
FLOW = "Flow:F"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    with Session(engine) as s:
        add_organization(
            s, name="acme", salesforce_org_id="00D000000000001", key=Fernet.generate_key()
        )
        s.commit()
        yield s
    engine.dispose()


def _row(session: Session, kind: str, trigger: str | None, outcome: str, *components: str) -> None:
    record_deployment(
        session,
        DeploymentCreate(
            organization_id="acme",
            kind=DeploymentKind(kind),
            trigger=Trigger(trigger) if trigger else None,
            api_version="62.0",
            components=list(components),
            deploy_id="0Af1",
            outcome=DeploymentOutcome(outcome),
            problems=[],
        ),
        now=datetime(2026, 11, 2, tzinfo=UTC),
    )


def test_nothing_recorded(session: Session) -> None:
    assert possibly_installed_triggers(session, "acme") == []
    assert components_to_remove(session, "acme") == []


def test_trigger_follows_installed_deploys_and_undeploy(session: Session) -> None:
    _row(session, "deploy", "workflow", "succeeded", OM, RULE)
    _row(session, "check-only", "flow", "succeeded", OM, FLOW)
    _row(session, "deploy", "flow", "failed", OM, FLOW)
    assert possibly_installed_triggers(session, "acme") == [Trigger.WORKFLOW]
    _row(session, "deploy", "flow", "inactive-flow", OM, FLOW)
    assert possibly_installed_triggers(session, "acme") == [Trigger.FLOW]
    assert components_to_remove(session, "acme") == [FLOW, OM, RULE]
    _row(session, "undeploy", None, "succeeded", FLOW, OM, RULE)
    assert possibly_installed_triggers(session, "acme") == []
    newest = latest_deployments(session, "acme", limit=2)
    assert [d.kind for d in newest] == [DeploymentKind.UNDEPLOY, DeploymentKind.DEPLOY]
    assert (
        newest[1].trigger is Trigger.FLOW and newest[1].outcome is DeploymentOutcome.INACTIVE_FLOW
    )
    assert newest[0].created_at.tzinfo is not None


@pytest.mark.parametrize("outcome", ["timeout", "unknown"])
def test_an_unsure_deploy_may_have_installed_its_trigger(session: Session, outcome: str) -> None:
    _row(session, "deploy", "workflow", "succeeded", OM, RULE)
    _row(session, "deploy", "flow", outcome, OM, FLOW)
    assert possibly_installed_triggers(session, "acme") == ["flow", "workflow"]
    assert components_to_remove(session, "acme") == [FLOW, OM, RULE]
    _row(session, "deploy", "workflow", "succeeded", OM, RULE)  # retired the flow
    assert possibly_installed_triggers(session, "acme") == ["workflow"]
    _row(session, "deploy", "flow", "failed", OM, FLOW)  # rolled back
    assert possibly_installed_triggers(session, "acme") == ["workflow"]
    _row(session, "undeploy", None, "succeeded", FLOW, OM, RULE)
    assert possibly_installed_triggers(session, "acme") == []


def test_components_of_an_unknown_deploy_are_removed(session: Session) -> None:
    _row(session, "deploy", "flow", "unknown", OM, FLOW)
    assert components_to_remove(session, "acme") == [FLOW, OM]
