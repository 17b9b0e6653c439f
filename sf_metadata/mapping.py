"""The Salesforce User to agent mapping (CONTRACT section 2, from the Tenfold "Agent Auto
Provision" product page, Table 1: https://docs.tenfold.com/en/agent-auto-provision.html).

Pure: :func:`map_user` turns a notification's User fields into an :class:`AgentRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AgentRecord", "PhoneNumber"]


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """One entry of ``phoneNumbers``: ``type`` is ``"mobile"`` (MobilePhone) or
    ``"other"`` (Phone)."""

    type: str
    number: str


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One agent as the mapping derives it; ids are 18-character. See :meth:`to_json`."""

    username: str | None
    crm_id: str
    crm_user: str | None
    name: str | None
    picture_url: str | None
    disabled: bool
    inbound_enabled: bool
    phone_numbers: tuple[PhoneNumber, ...]
    call_center_id: str | None
    email: str | None
    language: str | None
    profile_id: str | None
    user_role_id: str | None
    user_type: str | None
    custom_fields: Mapping[str, str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The agent JSON of CONTRACT section 2, keys in the contract's order::

            {"username", "crmId", "crmUser", "name", "pictureUrl", "disabled",
             "inboundEnabled", "phoneNumbers": [{"type", "number"}...],
             "crm": {"callCenterId", "email", "language", "profileId", "userRoleId",
                     "userType", "customFields": {...}}}
        """
        return {
            "username": self.username,
            "crmId": self.crm_id,
            "crmUser": self.crm_user,
            "name": self.name,
            "pictureUrl": self.picture_url,
            "disabled": self.disabled,
            "inboundEnabled": self.inbound_enabled,
            "phoneNumbers": [{"type": p.type, "number": p.number} for p in self.phone_numbers],
            "crm": {
                "callCenterId": self.call_center_id,
                "email": self.email,
                "language": self.language,
                "profileId": self.profile_id,
                "userRoleId": self.user_role_id,
                "userType": self.user_type,
                "customFields": dict(self.custom_fields),
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentRecord:
        """Inverse of :meth:`to_json` (used by the store to rebuild a record)."""
        crm = data["crm"]
        return cls(
            username=data["username"],
            crm_id=data["crmId"],
            crm_user=data["crmUser"],
            name=data["name"],
            picture_url=data["pictureUrl"],
            disabled=data["disabled"],
            inbound_enabled=data["inboundEnabled"],
            phone_numbers=tuple(PhoneNumber(p["type"], p["number"]) for p in data["phoneNumbers"]),
            call_center_id=crm["callCenterId"],
            email=crm["email"],
            language=crm["language"],
            profile_id=crm["profileId"],
            user_role_id=crm["userRoleId"],
            user_type=crm["userType"],
            custom_fields=dict(crm["customFields"]),
        )
