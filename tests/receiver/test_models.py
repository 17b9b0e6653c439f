"""receiver.models: aware UTC timestamps, JSON columns, the unique rules of the agent table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import exc
from sqlalchemy.engine import Engine
from sqlmodel import select

from deployer.kinds import DeploymentKind, DeploymentOutcome, Trigger
from receiver.db import transaction
from receiver.models import Agent, Deployment, Organization, ProvisioningMessage, Tombstone
from receiver.outcomes import MessageOutcome
from tests.factories import sf_id


def _agent(org: str, n: int, username: str | None, now: datetime, **kw: object) -> Agent:
    return Agent(
        id=f"{n:032x}",
        organization_id=org,
        crm_id=sf_id("005", n),
        username=username,
        username_key=username.casefold() if username else None,
        system_modstamp=kw.get("stamp", now),  # type: ignore[arg-type]
        data={"crmId": sf_id("005", n), "phoneNumbers": [], "ünïcode": "名前"},
        created_at=now,
        updated_at=now,
    )


def test_timestamps_round_trip_as_aware_utc(
    engine: Engine, make_organization, now: datetime
) -> None:
    paris = timezone(timedelta(hours=1))
    stamp = datetime(2026, 11, 20, 11, 0, 0, 123000, tzinfo=paris)
    with transaction(engine) as session:
        org, _ = make_organization(session, name="acme")
        session.add(_agent(org.id, 1, "a@acme.com", now, stamp=stamp))
    with transaction(engine) as session:
        agent = session.exec(select(Agent)).one()
        assert agent.system_modstamp == stamp
        assert agent.system_modstamp is not None and agent.system_modstamp.tzinfo == UTC
        assert agent.system_modstamp.hour == 10
        org_row = session.get(Organization, "acme")
        assert (
            org_row is not None and org_row.created_at == now and org_row.created_at.tzinfo == UTC
        )
        assert agent.data["ünïcode"] == "名前"


def test_naive_datetimes_are_refused(engine: Engine, make_organization) -> None:
    with pytest.raises(exc.StatementError, match="naive datetime"):
        with transaction(engine) as session:
            org, _ = make_organization(session)
            session.add(_agent(org.id, 1, None, datetime(2026, 1, 1)))  # noqa: DTZ001


def test_agent_crm_id_is_unique_per_organization(
    engine: Engine, make_organization, now: datetime
) -> None:
    with transaction(engine) as session:
        a, _ = make_organization(session)
        b, _ = make_organization(session)
        session.add(_agent(a.id, 1, None, now))
        other = _agent(b.id, 1, None, now)
        other.id = "f" * 32
        session.add(other)  # same Salesforce user id in another organization: fine
    with pytest.raises(exc.IntegrityError):
        with transaction(engine) as session:
            dup = _agent(a.id, 1, None, now)
            dup.id = "e" * 32
            session.add(dup)


def test_username_key_unique_per_organization_but_null_is_free(
    engine: Engine, make_organization, now: datetime
) -> None:
    with transaction(engine) as session:
        org, _ = make_organization(session)
        session.add(_agent(org.id, 1, None, now))
        session.add(_agent(org.id, 2, None, now))
        session.add(_agent(org.id, 3, "Jane@Acme.com", now))
    with pytest.raises(exc.IntegrityError):
        with transaction(engine) as session:
            session.add(_agent(org.id, 4, "jane@acme.COM", now))
    with transaction(engine) as session:
        assert len(session.exec(select(Agent)).all()) == 3


def test_deployment_json_columns_round_trip(
    engine: Engine, make_organization, now: datetime
) -> None:
    with transaction(engine) as session:
        org, _ = make_organization(session)
        session.add(
            Deployment(
                organization_id=org.id,
                created_at=now,
                kind=DeploymentKind.DEPLOY,
                trigger=Trigger.WORKFLOW,
                api_version="62.0",
                components=["WorkflowOutboundMessage:User.X", "WorkflowRule:User.Y"],
                deploy_id="0Af000000000001AAA",
                outcome=DeploymentOutcome.SUCCEEDED,
                problems=[],
            )
        )
    with transaction(engine) as session:
        d = session.exec(select(Deployment)).one()
        assert d.id is not None
        assert d.components == ["WorkflowOutboundMessage:User.X", "WorkflowRule:User.Y"]
        assert d.problems == [] and d.trigger == "workflow" and d.created_at == now


def test_foreign_keys_are_enforced(engine: Engine, now: datetime) -> None:
    with pytest.raises(exc.IntegrityError):
        with transaction(engine) as session:
            session.add(
                Tombstone(organization_id="nobody", crm_id=sf_id("005", 1), deprovisioned_at=now)
            )


def test_deleting_an_organization_cascades(
    engine: Engine, make_organization, now: datetime
) -> None:
    with transaction(engine) as session:
        org, _ = make_organization(session, name="gone")
        session.add(_agent(org.id, 1, "a@acme.com", now))
        session.add(
            ProvisioningMessage(
                organization_id=org.id, received_at=now, outcome=MessageOutcome.PROCESSED
            )
        )
    with transaction(engine) as session:
        session.delete(session.get(Organization, "gone"))
    with transaction(engine) as session:
        assert session.exec(select(Agent)).all() == []
        assert session.exec(select(ProvisioningMessage)).all() == []
