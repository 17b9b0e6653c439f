"""Names of our Salesforce metadata and the User fields the Outbound Message sends.

The deployer puts these in the package; the mapping reads the same field names, so the
two cannot drift apart. API names from the Object Reference, User
(https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_user.htm).
"""

from __future__ import annotations

__all__ = [
    "FLOW_NAME",
    "MAPPED_USER_FIELDS",
    "OUTBOUND_MESSAGE_FIELDS",
    "OUTBOUND_MESSAGE_NAME",
    "SOBJECT_TYPE",
    "WORKFLOW_RULE_NAME",
]

SOBJECT_TYPE = "User"

#: ``WorkflowOutboundMessage`` full name is ``User.<this>``.
OUTBOUND_MESSAGE_NAME = "Agent_Auto_Provision_Outbound_Message"
#: ``WorkflowRule`` full name is ``User.<this>``.
WORKFLOW_RULE_NAME = "Agent_Auto_Provision_User_Sync"
#: ``Flow`` full name (record-triggered, after save, on User).
FLOW_NAME = "Agent_Auto_Provision_User_Sync_Flow"

#: Every User field the mapping (CONTRACT section 2) reads, besides ``Id``.
MAPPED_USER_FIELDS: tuple[str, ...] = (
    "CallCenterId",
    "Email",
    "FirstName",
    "IsActive",
    "LanguageLocaleKey",
    "LastName",
    "MobilePhone",
    "Name",
    "Phone",
    "ProfileId",
    "SmallPhotoUrl",
    "UserRoleId",
    "UserType",
    "Username",
)

#: The fields of the Outbound Message, in the order the deployer writes them: the record
#: id, the ordering stamps, then the mapped fields. Custom fields are appended per org.
OUTBOUND_MESSAGE_FIELDS: tuple[str, ...] = (
    "Id",
    "SystemModstamp",
    "LastModifiedDate",
    *MAPPED_USER_FIELDS,
)
