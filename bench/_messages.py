"""Outbound Messages for the bench and the soak/fault tests, in the exact wire format.

Own generator (it does not need ``tests/``): the envelope of reference
``outbound-wire-format.md`` section 1.2 (``soapenv`` envelope with ``xsd``/``xsi``
declared, ``notifications`` in the default namespace ``http://soap.sforce.com/2005/09/outbound``,
``sObject xsi:type="sf:User"`` with ``xmlns:sf="urn:sobject.enterprise.soap.sforce.com"``,
``sf:Id`` first then the selected fields alphabetically, nulls omitted,
``SessionId xsi:nil="true"``, Enterprise/Partner URLs with the 15-character org id).

Each notification is a :class:`UserChange`: one version of one Salesforce User. Fields are
realistic (the mapped fields of ``sf_metadata.metadata_names.MAPPED_USER_FIELDS``, the two
ordering stamps and two custom fields ``Team__c`` and ``Skill_Level__c``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

from sf_metadata.ids import to_18

__all__ = [
    "BENCH_ORG_ID",
    "UserChange",
    "bench_changes",
    "flatten",
    "render_message",
    "sf_id",
    "stamp_text",
    "user_fields",
]

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def sf_id(prefix: str, n: int, *, pod: str = "8d") -> str:
    """A valid 18-character Salesforce id with key ``prefix`` (3 characters) and serial ``n``.

    Layout: prefix (3) + pod (2) + 10 base-36 digits of ``n``; the case-safe suffix is
    computed by ``sf_metadata.ids.to_18`` (reference ``outbound-wire-format.md`` section 4).
    ``n`` must be below 36**10.
    """
    digits = ""
    value = n
    for _ in range(10):
        value, rem = divmod(value, 36)
        digits = _BASE36[rem] + digits
    return to_18(prefix + pod + digits)


#: The Salesforce org id the bench and the soak register (18 characters, ``00D``).
BENCH_ORG_ID = sf_id("00D", 4242)
_ACTION_ID = sf_id("04k", 7)
_PROFILE_ID = sf_id("00e", 12)
_ROLE_ID = sf_id("00E", 34)
_CALL_CENTER_ID = sf_id("04v", 56)
_EPOCH = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
_TEAMS = ("Tier 1 Support", "Tier 2 Support", "Billing & Returns", "Sales EMEA")
_LANGS = ("en_US", "de", "fr", "es", "ja")


def stamp_text(stamp: datetime) -> str:
    """``xsd:dateTime`` as Salesforce sends it: UTC, milliseconds, ``Z``."""
    return (
        stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    )


@dataclass(frozen=True, slots=True)
class UserChange:
    """One User notification: version ``version`` of user number ``user``.

    - ``notification_id``: 18-character ``04l`` id (the dedupe key).
    - ``user``: serial of the user; the User id is ``sf_id("005", user)``.
    - ``is_active``: ``IsActive``; ``call_center``: whether ``CallCenterId`` is sent.
    - ``stamp``: ``SystemModstamp`` (UTC); ``LastModifiedDate`` is the same instant.
    - ``run``: a tag that keeps usernames unique between runs on one store.
    """

    notification_id: str
    user: int
    version: int
    is_active: bool
    stamp: datetime
    call_center: bool = True
    run: str = "b"

    @property
    def user_id(self) -> str:
        """The 18-character User id (``005``)."""
        return sf_id("005", self.user)

    @property
    def username(self) -> str:
        """The User's ``Username`` (a valid e-mail address, stable across versions)."""
        return f"agent{self.user}.{self.run}@acme-contact.com"

    @property
    def name(self) -> str:
        """``Name`` of this version."""
        return f"Agent {self.user} v{self.version}"


def user_fields(change: UserChange) -> dict[str, str]:
    """The ``sf:`` fields of one change, by API name, alphabetically (``Id`` excluded)."""
    stamp = stamp_text(change.stamp)
    fields = {
        "CallCenterId": _CALL_CENTER_ID if change.call_center else None,
        "Email": f"agent{change.user}.{change.run}@acme-contact.com",
        "FirstName": "Agent",
        "IsActive": "true" if change.is_active else "false",
        "LanguageLocaleKey": _LANGS[change.user % len(_LANGS)],
        "LastModifiedDate": stamp,
        "LastName": f"{change.user} v{change.version}",
        "MobilePhone": f"+1 415 555 {change.user % 10000:04d}",
        "Name": change.name,
        "Phone": None if change.user % 3 == 0 else f"+1 212 555 {change.user % 10000:04d}",
        "ProfileId": _PROFILE_ID,
        "Skill_Level__c": str(change.version),
        "SmallPhotoUrl": f"https://acme.file.force.com/profilephoto/005/T/{change.user}",
        "SystemModstamp": stamp,
        "Team__c": _TEAMS[change.user % len(_TEAMS)],
        "UserRoleId": _ROLE_ID,
        "UserType": "Standard",
        "Username": change.username,
    }
    return {key: fields[key] for key in sorted(fields) if fields[key] is not None}  # type: ignore[misc]


def _notification_xml(change: UserChange) -> str:
    parts = [
        "   <Notification>\n",
        f"    <Id>{change.notification_id}</Id>\n",
        '    <sObject xsi:type="sf:User" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">\n',
        f"     <sf:Id>{change.user_id}</sf:Id>\n",
    ]
    for key, value in user_fields(change).items():
        parts.append(f"     <sf:{key}>{escape(value)}</sf:{key}>\n")
    parts.append("    </sObject>\n   </Notification>\n")
    return "".join(parts)


def render_message(changes: Sequence[UserChange], *, organization_id: str = BENCH_ORG_ID) -> bytes:
    """One Outbound Message (UTF-8 bytes) carrying ``changes`` in order (at most 100)."""
    org15 = organization_id[:15]
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        " <soapenv:Body>\n"
        '  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">\n'
        f"   <OrganizationId>{organization_id}</OrganizationId>\n"
        f"   <ActionId>{_ACTION_ID}</ActionId>\n"
        '   <SessionId xsi:nil="true"/>\n'
        "   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/60.0/"
        f"{org15}</EnterpriseUrl>\n"
        "   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/60.0/"
        f"{org15}</PartnerUrl>\n"
    )
    body = "".join(_notification_xml(change) for change in changes)
    tail = "  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n"
    return (head + body + tail).encode("utf-8")


def bench_changes(
    messages: int, per_message: int = 100, *, run: str = "b"
) -> list[list[UserChange]]:
    """``messages`` lists of ``per_message`` creates of distinct active users.

    User ``i`` of message ``m`` is user number ``m * per_message + i``; notification ids
    are distinct; stamps increase by one millisecond per notification.
    """
    out: list[list[UserChange]] = []
    for m in range(messages):
        batch = []
        for i in range(per_message):
            n = m * per_message + i
            batch.append(
                UserChange(
                    notification_id=sf_id("04l", n),
                    user=n,
                    version=1,
                    is_active=True,
                    stamp=_EPOCH + timedelta(milliseconds=n),
                    call_center=n % 10 != 0,
                    run=run,
                )
            )
        out.append(batch)
    return out


def flatten(batches: Iterable[Sequence[UserChange]]) -> list[UserChange]:
    """All changes of ``batches``, in order."""
    return [change for batch in batches for change in batch]
