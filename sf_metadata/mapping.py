"""The Salesforce User to agent mapping (CONTRACT section 2, from the Tenfold "Agent Auto
Provision" product page, Table 1: https://docs.tenfold.com/en/agent-auto-provision.html).

Pure: :func:`map_user` turns a notification's User fields into an :class:`AgentRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sf_metadata._email import is_email_address
from sf_metadata.errors import InvalidSalesforceId, NotificationError
from sf_metadata.ids import USER, canonical_id

__all__ = [
    "AGENT_FIELD_LABELS",
    "MAX_EMAIL_ADDRESS_LENGTH",
    "MAX_USERNAME_LENGTH",
    "AgentRecord",
    "PhoneNumber",
    "agent_username",
    "map_user",
    "parse_boolean",
    "username_key",
    "field_label",
]

#: The agent JSON's fields (CONTRACT section 2, dotted paths) as a person reads them: the
#: dashboard's labels, and the words of an update's reason. A custom field is read by its
#: API name (:func:`field_label`).
AGENT_FIELD_LABELS = {
    "username": "Username",
    "crmId": "Salesforce user id",
    "crmUser": "Salesforce username",
    "name": "Name",
    "pictureUrl": "Photo",
    "disabled": "Status",
    "inboundEnabled": "Inbound",
    "phoneNumbers": "Phone numbers",
    "crm.callCenterId": "Call center",
    "crm.email": "Email",
    "crm.language": "Language",
    "crm.profileId": "Profile",
    "crm.userRoleId": "Role",
    "crm.userType": "User type",
}
_CUSTOM_PREFIX = "crm.customFields."


def field_label(path: str) -> str:
    """The label of an agent JSON path (:data:`AGENT_FIELD_LABELS`; a custom field's API
    name, such as ``Team__c``; else the path itself)."""
    label = AGENT_FIELD_LABELS.get(path)
    if label is not None:
        return label
    return path.removeprefix(_CUSTOM_PREFIX)


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


#: No e-mail address is longer than 254 characters (RFC 5321 section 4.5.3.1.3 path limit,
#: as email-validator enforces it): a longer ``Username`` is not an address, decided at once
#: without running the validator over it (its cost is linear in the length).
MAX_EMAIL_ADDRESS_LENGTH = 254

#: The longest agent ``username`` the store holds (``agent.username`` and
#: ``agent.username_key`` are VARCHAR(320): 64-character local part, ``@``, 255-character
#: domain, RFC 3696 section 3); checked on the value and on its casefolded key.
MAX_USERNAME_LENGTH = 320

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def parse_boolean(name: str, value: str | None) -> bool:
    """An ``xsd:boolean`` field value: ``true``/``false``/``1``/``0``, case-insensitive,
    surrounding whitespace ignored (reference ``provisioning-pitfalls.md`` B2: never treat a
    string such as ``"False"`` as truthy).

    Raises :class:`NotificationError` naming the field for anything else, ``None`` or ``""``.
    """
    if value is not None:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise NotificationError(f"{name} is {shown!r}, not a boolean (true/false/1/0)")
    raise NotificationError(f"{name} is missing")


def _value(fields: Mapping[str, str | None], name: str) -> str | None:
    """A standard field's text; absent, ``xsi:nil`` and empty all count as null."""
    value = fields.get(name)
    return value if value else None


def _is_email(value: str) -> bool:
    return len(value) <= MAX_EMAIL_ADDRESS_LENGTH and is_email_address(value)


def username_key(username: str | None) -> str | None:
    """The key under which usernames collide in one organization: the casefolded
    username, or ``None`` (no username never collides)."""
    return username.casefold() if username else None


def agent_username(fields: Mapping[str, str | None]) -> str | None:
    """The agent ``username``: ``Username`` if it is a valid e-mail address by
    email-validator syntax rules (``check_deliverability=False``, so no DNS; special-use
    domains such as ``.invalid`` or ``.test`` are not valid), else ``Email`` if that is
    one, else ``Username`` (``None`` if it is null). Values are kept as sent, not
    normalised.

    Sandbox usernames such as ``jane@acme.com.uat`` are valid (reference
    ``provisioning-pitfalls.md`` B7); ``jane@acme.com.invalid`` falls back to ``Email``.
    A sandbox refresh appends ``.invalid`` to every User's e-mail (Salesforce Help, "Sandbox
    Setup Considerations": "the email addresses of users are modified ... by appending
    .invalid"), so such an ``Email`` never becomes the username: ``Username`` is kept.
    A value longer than 254 characters is never an address (not validated). The length
    limit of the store is checked by :func:`map_user`, not here.
    """
    username = _value(fields, "Username")
    if username is not None and _is_email(username):
        return username
    email = _value(fields, "Email")
    if email is not None and _is_email(email):
        return email
    return username


@lru_cache(maxsize=4096)
def _related_id(value: str) -> str:
    """``canonical_id(value.strip())``, cached: a few call centers, profiles and roles are
    named by every user of an org. Raises :class:`InvalidSalesforceId` (not cached)."""
    return canonical_id(value.strip())


def _optional_id(fields: Mapping[str, str | None], name: str) -> str | None:
    # Shape only, no key-prefix check: a related id Salesforce sent is never rejected for
    # its prefix (reference outbound-receiver-bugs.md B17: strict validation loses traffic).
    value = fields.get(name)
    if not value:
        return None
    try:
        return _related_id(value)
    except InvalidSalesforceId as exc:
        raise NotificationError(f"{name}: {exc}") from None


def _check_username_length(username: str | None) -> None:
    if username is None:
        return
    longest = max(len(username), len(username.casefold()))
    if longest > MAX_USERNAME_LENGTH:
        raise NotificationError(
            f"the username (from Username or Email) is {longest} characters long "
            f"(casefolded); the store holds at most {MAX_USERNAME_LENGTH}"
        )


def map_user(crm_id: str, fields: Mapping[str, str | None]) -> AgentRecord:
    """Map one User notification to an :class:`AgentRecord` (every row of CONTRACT
    section 2; Tenfold "Agent Auto Provision" Table 1).

    ``crm_id`` is the User ``Id`` (15 or 18 characters; stored as 18). ``fields`` are the
    notification's fields by API name (text as sent, ``None`` for nil; absent = null; an
    empty element counts as null for the standard fields). ``IsActive`` must be present.
    ``customFields`` holds every ``..__c`` field, the text as sent (``None`` for nil).

    Raises :class:`NotificationError` (permanent, with the reason) when ``IsActive`` is
    missing or not a boolean, an id field (Id, CallCenterId, ProfileId, UserRoleId) is
    not a Salesforce id (15/18 letters and digits; ``Id`` must be a ``005`` User id), or
    the agent ``username`` (or its casefolded key) is longer than
    :data:`MAX_USERNAME_LENGTH` characters (the store could not hold it).
    """
    try:
        crm = canonical_id(crm_id.strip(), USER)
    except InvalidSalesforceId as exc:
        raise NotificationError(f"Id: {exc}") from None
    is_active = parse_boolean("IsActive", _value(fields, "IsActive"))
    call_center_id = _optional_id(fields, "CallCenterId")
    inbound_enabled = is_active and call_center_id is not None

    name = _value(fields, "Name")
    if name is None:
        joined = " ".join(
            part for part in (_value(fields, "FirstName"), _value(fields, "LastName")) if part
        ).strip()
        name = joined or None

    phones = tuple(
        PhoneNumber(kind, number)
        for kind, number in (
            ("mobile", _value(fields, "MobilePhone")),
            ("other", _value(fields, "Phone")),
        )
        if number is not None
    )
    username = agent_username(fields)
    _check_username_length(username)
    return AgentRecord(
        username=username,
        crm_id=crm,
        crm_user=_value(fields, "Username"),
        name=name,
        picture_url=_value(fields, "SmallPhotoUrl"),
        disabled=not inbound_enabled,
        inbound_enabled=inbound_enabled,
        phone_numbers=phones,
        call_center_id=call_center_id,
        email=_value(fields, "Email"),
        language=_value(fields, "LanguageLocaleKey"),
        profile_id=_optional_id(fields, "ProfileId"),
        user_role_id=_optional_id(fields, "UserRoleId"),
        user_type=_value(fields, "UserType"),
        custom_fields={k: fields[k] for k in sorted(k for k in fields if k.endswith("__c"))},
    )
