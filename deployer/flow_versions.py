"""Flow versions through the Tooling API: read, deactivate, reactivate, delete.

A flow is retired or removed through the Tooling API rather than a destructive deploy:
destructive Flow deletes hit known issue W-10538057 (reference ``metadata-deploy-bugs.md``
#7). ``FlowDefinition.ActiveVersionId`` says which version runs; setting
``Metadata.activeVersionNumber`` to 0 deactivates the flow (as CumulusCI's
``activate_flow`` task does; reference ``salesforce-facts-2026.md``).

Every function raises :class:`~sf_metadata.errors.SalesforceError` (or its
``AuthenticationError``) when Salesforce refuses or cannot be reached, except
:func:`reactivate_flow`, which returns the problem as a line.
"""

from __future__ import annotations

from typing import Any

from deployer.client import OrgApi
from deployer.preflight import soql_quote
from sf_metadata.errors import SalesforceError

__all__ = ["deactivate_flow", "delete_flow_versions", "flow_definition", "reactivate_flow"]


def flow_definition(client: OrgApi, flow_name: str) -> dict[str, Any] | None:
    """The ``FlowDefinition`` row (Id, DeveloperName, ActiveVersionId, LatestVersionId)
    of ``flow_name``, or None when the org has no such flow."""
    rows = client.tooling_query(
        "SELECT Id, DeveloperName, ActiveVersionId, LatestVersionId FROM FlowDefinition "
        f"WHERE DeveloperName = {soql_quote(flow_name)}"
    )
    return rows[0] if rows else None


def set_flow_active_version(client: OrgApi, definition_id: str, number: int) -> None:
    """Make version ``number`` of the definition active (0: none)."""
    client.tooling_patch(
        f"sobjects/FlowDefinition/{definition_id}", {"Metadata": {"activeVersionNumber": number}}
    )


def deactivate_flow(client: OrgApi, flow_name: str) -> tuple[str, int] | None:
    """Deactivate the flow; return ``(definition id, version number)`` to restore it."""
    definition = flow_definition(client, flow_name)
    if not definition or not definition.get("ActiveVersionId"):
        return None
    active_id = soql_quote(str(definition["ActiveVersionId"]))
    active = client.tooling_query(f"SELECT Id, VersionNumber FROM Flow WHERE Id = {active_id}")
    number = int(active[0]["VersionNumber"]) if active else 0
    set_flow_active_version(client, str(definition["Id"]), 0)
    return str(definition["Id"]), number


def delete_flow_versions(client: OrgApi, flow_name: str) -> int:
    """Delete every version of ``flow_name``; return how many were deleted."""
    rows = client.tooling_query(
        f"SELECT Id FROM Flow WHERE Definition.DeveloperName = {soql_quote(flow_name)}"
    )
    return sum(client.tooling_delete(f"sobjects/Flow/{row['Id']}") for row in rows)


def reactivate_flow(client: OrgApi, restore: tuple[str, int], flow_name: str) -> str | None:
    """Reactivate the flow; return a problem line when that fails, or when the version
    that was active could not be read (nothing to restore: never claim it was)."""
    if restore[1] <= 0:
        return (
            f"The flow {flow_name} (Flow) was deactivated for this deploy but its active "
            "version could not be found (Tooling Flow), so it was not reactivated: "
            "activate it in Setup > Flows"
        )
    try:
        set_flow_active_version(client, *restore)
    except SalesforceError as exc:
        return (
            f"The flow {flow_name} (Flow) was deactivated for this deploy and could not "
            f"be reactivated ({exc}): reactivate version {restore[1]} in Setup > Flows"
        )
    return None
