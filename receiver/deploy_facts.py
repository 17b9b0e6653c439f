"""What the store knows of an organization for a deploy, and the record of each run.

:func:`org_facts` reads the organization's Salesforce org id, its webhook URL with the
token, and what our earlier deploys may have left in the org (``receiver/deployments.py``);
:func:`record_outcome` writes one ``deployment`` row per check-only, deploy or undeploy
run. Both are used by Refresh Webhook (``receiver/refresh.py``) and the deploy CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from deployer.deploy import DeployOutcome
from deployer.kinds import DeploymentKind
from deployer.package import Trigger
from receiver.db import transaction
from receiver.deployments import (
    components_to_remove,
    possibly_installed_triggers,
    record_deployment,
)
from receiver.models import DeploymentCreate
from receiver.organizations import get_organization, reveal_token, webhook_path, webhook_url

__all__ = ["OrgFacts", "org_facts", "record_outcome"]


@dataclass(frozen=True)
class OrgFacts:
    """What the store knows of the organization for a deploy."""

    name: str
    salesforce_org_id: str
    webhook_url: str
    installed_triggers: tuple[Trigger, ...]
    recorded_components: list[str]
    #: ``webhook_url`` without its token, and the token's SHA-256 hex.
    endpoint: str = ""
    token_sha256: str = ""

    def previous_trigger(self, trigger: Trigger) -> Trigger | None:
        """The trigger a deploy of ``trigger`` must treat as deployed before: the other
        one whenever it may be installed (so it is retired), else ``trigger`` or ``None``."""
        others = [t for t in self.installed_triggers if t != trigger]
        if others:
            return others[0]
        return trigger if trigger in self.installed_triggers else None


def org_facts(engine: Engine, key: bytes, organization: str) -> OrgFacts:
    """Read :class:`OrgFacts`; raises :class:`~sf_metadata.errors.OrganizationNotFound`."""
    with transaction(engine, read_only=True) as session:
        org = get_organization(session, organization)
        url = webhook_url(org, reveal_token(org, key))
        installed = possibly_installed_triggers(session, org.id)
        return OrgFacts(
            name=org.id,
            salesforce_org_id=org.salesforce_org_id,
            webhook_url=url,
            installed_triggers=tuple(installed),
            recorded_components=components_to_remove(session, org.id),
            endpoint=f"{org.base_url}{webhook_path(org.id)}",
            token_sha256=org.token_hash,
        )


def record_outcome(
    engine: Engine, organization: str, outcome: DeployOutcome, *, facts: OrgFacts | None = None
) -> None:
    """Insert the ``deployment`` row of ``outcome``; with ``facts``, the endpoint the
    deploy put in the Outbound Message (a deploy or check-only run, not an undeploy)."""
    deployed = facts is not None and outcome.kind != DeploymentKind.UNDEPLOY
    with transaction(engine) as session:
        record_deployment(
            session,
            DeploymentCreate(
                organization_id=organization,
                kind=outcome.kind,
                trigger=outcome.trigger,
                api_version=outcome.api_version,
                components=list(outcome.components),
                deploy_id=outcome.deploy_id,
                outcome=outcome.outcome,
                problems=list(outcome.problems),
            ),
            endpoint=facts.endpoint if deployed and facts is not None else None,
            token_sha256=facts.token_sha256 if deployed and facts is not None else None,
        )
