"""The deployer's vocabulary, as string enums: the trigger that sends the Outbound
Message, the kind of a Metadata API run, and how it ended. A leaf module (no imports from
the project), so the store (``receiver/models.py``) and the dashboard can use the same
values without importing the deployer's Salesforce client.

Each member is a ``str`` (``StrEnum``): it is stored, printed and put in JSON as its
value, and compares equal to it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeploymentKind", "DeploymentOutcome", "Trigger"]


class Trigger(StrEnum):
    """What sends the User Outbound Message: a Workflow Rule (end of support December 31,
    2025, Salesforce Help "Migrate to Flow") or a record-triggered Flow (API 53.0+)."""

    WORKFLOW = "workflow"
    FLOW = "flow"


class DeploymentKind(StrEnum):
    """One Metadata API run: a validation (``checkOnly``), a deploy, or the removal."""

    CHECK_ONLY = "check-only"
    DEPLOY = "deploy"
    UNDEPLOY = "undeploy"


class DeploymentOutcome(StrEnum):
    """How a run ended.

    - ``SUCCEEDED``: every component of ours is in ``componentSuccesses``;
    - ``FAILED``: Salesforce refused it (the problems say why);
    - ``TIMEOUT``: not done before our timeout (it may still finish in the org);
    - ``INACTIVE_FLOW``: deployed, but the flow's latest version is not active;
    - ``UNKNOWN``: Salesforce could not be asked how a submitted deploy ended (recorded by
      the caller; the components may be in the org).
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INACTIVE_FLOW = "inactive-flow"
    UNKNOWN = "unknown"

    @property
    def installed(self) -> bool:
        """Whether our components exist in the org afterwards (an inactive flow is
        deployed all the same)."""
        return self in (DeploymentOutcome.SUCCEEDED, DeploymentOutcome.INACTIVE_FLOW)

    @property
    def unsure(self) -> bool:
        """Whether the deploy was submitted and may have gone through server-side."""
        return self in (DeploymentOutcome.TIMEOUT, DeploymentOutcome.UNKNOWN)
