"""Preflight: everything a deploy needs, checked at once, every problem reported together.

Each problem names the Setup label and the API name to fix. Checks (reference
``metadata-deploy.md`` section 5):

- the org logged in is the one registered for the organization (``Organization.Id``,
  compared by its first 15 characters): a sandbox pointed at a production organization's
  receiver is refused;
- the API version: pinned (:data:`deployer.package.PINNED_API_VERSION`), capped at the
  org's maximum (``GET /services/data/``), 53.0 or later for ``--trigger flow``;
- the deploying user has API Enabled, Modify Metadata Through Metadata API Functions or
  Modify All Data, and Customize Application, read from ``UserPermissionAccess`` after
  describing it (its fields vary by org and edition;
  https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/meta_metadata_perm.htm);
- the integration user (the Outbound Message's "send as" user) exists and is active;
- at least one ``CallCenter`` exists;
- no Outbound Message of our name already points at another receiver (Tooling
  ``WorkflowOutboundMessage``);
- the webhook URL can be reached from Salesforce, judged from the URL alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import requests

from deployer.client import OrgApi
from deployer.package import (
    PINNED_API_VERSION,
    Trigger,
    flow_version_problem,
    validate_api_version,
)
from deployer.urlcheck import check_webhook_url, redact_url
from sf_metadata.errors import (
    AuthenticationError,
    Problem,
    SalesforceError,
    SalesforceUnreadable,
    Setting,
)
from sf_metadata.ids import same_org_id, to_18
from sf_metadata.metadata_names import OUTBOUND_MESSAGE_NAME, SOBJECT_TYPE

__all__ = [
    "REQUIRED_PERMISSIONS",
    "PreflightReport",
    "check_org",
    "choose_api_version",
    "custom_user_fields",
    "preflight",
    "soql_quote",
]

#: (API name, Setup label) of the deploying user's permissions. Modify Metadata or Modify
#: All Data is enough for the second line.
REQUIRED_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("PermissionsApiEnabled", "API Enabled"),
    ("PermissionsModifyMetadata", "Modify Metadata Through Metadata API Functions"),
    ("PermissionsModifyAllData", "Modify All Data"),
    ("PermissionsCustomizeApplication", "Customize Application"),
)
_GRANT = "grant it in Setup > Users > Profiles or Permission Sets"


@dataclass(frozen=True)
class PreflightReport:
    """What preflight found. ``problems`` empty means a deploy may go ahead.

    ``salesforce_org_id`` is 18 characters; ``api_version`` the version to deploy with.
    """

    salesforce_org_id: str | None
    is_sandbox: bool | None
    api_version: str
    org_max_api_version: str | None
    deploying_user: str | None
    integration_user: str | None
    custom_fields: tuple[str, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (camelCase keys)."""
        data = asdict(self)
        return {
            "ok": self.ok,
            "salesforceOrgId": data["salesforce_org_id"],
            "isSandbox": data["is_sandbox"],
            "apiVersion": data["api_version"],
            "orgMaxApiVersion": data["org_max_api_version"],
            "deployingUser": data["deploying_user"],
            "integrationUser": data["integration_user"],
            "customFields": list(self.custom_fields),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


def soql_quote(value: str) -> str:
    """A SOQL string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def choose_api_version(
    requested: str | None, org_max: str | None, trigger: Trigger
) -> tuple[str, list[str]]:
    """Return ``(version, problems)``: ``requested`` if the org serves it, else the pinned
    version capped at ``org_max``; a flow needs 53.0 or later. ``org_max`` ``None`` means
    no org is involved (a dry run): any valid version is accepted."""
    problems: list[str] = []
    if requested is not None:
        version = validate_api_version(requested)
        if org_max is not None and float(version) > float(org_max):
            problems.append(
                Problem(
                    f"API version {version} is not available in this org: its maximum is {org_max}",
                    Setting.API_VERSION,
                )
            )
    else:
        version = min(PINNED_API_VERSION, org_max or PINNED_API_VERSION, key=float)
    flow_problem = flow_version_problem(trigger, version)
    if flow_problem is not None:
        problems.append(flow_problem)
    return version, problems


_COMPOUND_TYPES = frozenset({"location", "address"})


def custom_user_fields(describe: dict[str, Any]) -> tuple[str, ...]:
    """Custom User fields for the Outbound Message from ``describe(User)``: every
    ``custom`` field ending in ``__c``, except long text areas (``textarea`` longer than 255),
    encrypted fields and compound fields (``location``, ``address``: the Outbound Message
    WSDL types every field as a simple value, and the receiver refuses nested elements);
    sorted."""
    names: list[str] = []
    for f in describe.get("fields", []):
        name = str(f.get("name", ""))
        if not f.get("custom") or not name.endswith("__c"):
            continue
        if f.get("type") == "textarea" and int(f.get("length") or 0) > 255:
            continue
        if f.get("encrypted") or f.get("type") == "encryptedstring":
            continue
        if f.get("type") in _COMPOUND_TYPES:
            continue
        names.append(name)
    return tuple(sorted(names))


def check_org(client: OrgApi, expected_org_id: str) -> tuple[str | None, bool | None, list[str]]:
    """Return ``(Organization.Id as 18 characters, IsSandbox, problems)``; a problem when
    the org is not ``expected_org_id`` (first 15 characters, case-sensitive)."""
    rows = client.query("SELECT Id, IsSandbox, OrganizationType FROM Organization")
    if not rows:
        return None, None, ["Salesforce returned no Organization record for this login"]
    actual = str(rows[0]["Id"])
    sandbox = bool(rows[0].get("IsSandbox"))
    problems: list[str] = []
    if not same_org_id(actual, expected_org_id):
        kind = "sandbox" if sandbox else "org"
        problems.append(
            Problem(
                f"These credentials log in to the {kind} {to_18(actual)} (Organization.Id), not the "
                f"Salesforce org {to_18(expected_org_id)} registered for this organization: log in "
                "to the registered org, or after a sandbox refresh register the new org id",
                Setting.SALESFORCE_ORG_ID,
            )
        )
    return to_18(actual), sandbox, problems


def _check_permissions(client: OrgApi) -> list[str]:
    described = client.describe("UserPermissionAccess")
    available = {str(f.get("name")) for f in described.get("fields", [])}
    wanted = [name for name, _ in REQUIRED_PERMISSIONS if name in available]
    granted: dict[str, bool] = {}
    if wanted:
        rows = client.query(f"SELECT {', '.join(wanted)} FROM UserPermissionAccess")
        row = rows[0] if rows else {}
        granted = {name: bool(row.get(name)) for name in wanted}
    labels = dict(REQUIRED_PERMISSIONS)
    problems: list[str] = []
    for name in ("PermissionsApiEnabled", "PermissionsCustomizeApplication"):
        if not granted.get(name):
            problems.append(f'The deploying user lacks "{labels[name]}" ({name}): {_GRANT}')
    if not (granted.get("PermissionsModifyMetadata") or granted.get("PermissionsModifyAllData")):
        problems.append(
            'The deploying user lacks "Modify Metadata Through Metadata API Functions" '
            '(PermissionsModifyMetadata) or "Modify All Data" (PermissionsModifyAllData): '
            f"{_GRANT}"
        )
    return problems


def _check_integration_user(client: OrgApi, username: str) -> list[str]:
    rows = client.query(
        f"SELECT Id, Username, IsActive FROM User WHERE Username = {soql_quote(username)}"
    )
    if not rows:
        return [
            Problem(
                f'The integration user "{username}" (User.Username) does not exist in this '
                "org: create it in Setup > Users, or choose an existing user",
                Setting.INTEGRATION_USER,
            )
        ]
    if not rows[0].get("IsActive"):
        return [
            Problem(
                f'The integration user "{username}" is inactive (User.IsActive): activate it '
                "in Setup > Users, or choose an active user",
                Setting.INTEGRATION_USER,
            )
        ]
    return []


def _check_call_center(client: OrgApi) -> list[str]:
    try:
        rows = client.query("SELECT Id, Name FROM CallCenter LIMIT 1")
    except AuthenticationError:
        raise
    except SalesforceError as exc:
        return [
            f"Cannot read call centers (CallCenter): {exc}; the deploying user needs "
            '"View Setup and Configuration" (PermissionsViewSetup)'
        ]
    if not rows:
        return [
            "No call center exists in this org (CallCenter): create one in Setup > Call "
            "Centers (and assign users to it) before provisioning agents"
        ]
    return []


def _check_existing_om(client: OrgApi, webhook_url: str) -> list[str]:
    rows = client.tooling_query(
        "SELECT Id, Name, Metadata FROM WorkflowOutboundMessage "
        f"WHERE Name = {soql_quote(OUTBOUND_MESSAGE_NAME)}"
    )
    ours = redact_url(webhook_url)
    problems: list[str] = []
    for row in rows:
        metadata = row.get("Metadata") or {}
        endpoint = str(metadata.get("endpointUrl") or "")
        if endpoint and redact_url(endpoint) != ours:
            problems.append(
                f'The Outbound Message "{OUTBOUND_MESSAGE_NAME}" (WorkflowOutboundMessage '
                f"{SOBJECT_TYPE}.{OUTBOUND_MESSAGE_NAME}) already sends to "
                f"{redact_url(endpoint)}, not {ours}: this org is wired to another receiver; "
                "undeploy it there first or remove it in Setup > Process Automation > "
                "Workflow Actions > Outbound Messages"
            )
    return problems


def network_failure(error: BaseException) -> BaseException | None:
    """The connection failure or timeout (no answer from Salesforce at all) that caused
    ``error``, as opposed to an answer that refused something: the first
    ``requests.ConnectionError`` or ``Timeout`` among its causes and contexts (a message
    raised ``from None``, as the OAuth token request raises it, keeps its context); or
    ``None``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (requests.ConnectionError, requests.Timeout)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` came from a connection that failed or timed out
    (:func:`network_failure`)."""
    return network_failure(error) is not None


def preflight(
    client: OrgApi,
    *,
    expected_org_id: str,
    webhook_url: str,
    trigger: Trigger,
    integration_user: str | None = None,
    api_version: str | None = None,
) -> PreflightReport:
    """Run every check against the org behind ``client`` and report all problems at once.

    ``integration_user`` defaults to the user the credentials log in as. Switches
    ``client`` to the chosen API version. Raises :class:`SalesforceUnreadable` (once) when
    Salesforce cannot be reached at all, :class:`AuthenticationError` when the session
    cannot be used (every other failure becomes a problem line); never raises for
    problems found (see :attr:`PreflightReport.problems`).
    """
    problems: list[str] = []
    warnings: list[str] = []

    def guarded(label: str, check: Any) -> Any:
        try:
            return check()
        except AuthenticationError:
            raise
        except SalesforceError as exc:
            failure = network_failure(exc)
            if failure is not None:  # said once, not once per check
                raise SalesforceUnreadable(
                    f"Salesforce cannot be reached ({type(failure).__name__} while "
                    f"{label[0].lower()}{label[1:]}): check the network and the instance URL; "
                    "nothing was changed"
                ) from exc
            problems.append(f"{label}: {exc}")
            return None

    org_max = guarded("Reading the org's API versions", client.max_api_version)
    version, version_problems = choose_api_version(
        api_version, org_max or PINNED_API_VERSION, trigger
    )
    problems.extend(version_problems)
    if org_max is not None:
        client.use_version(min(version, org_max, key=float))

    org = guarded("Reading the Organization", lambda: check_org(client, expected_org_id))
    org_id, sandbox = (org[0], org[1]) if org else (None, None)
    if org:
        problems.extend(org[2])
    try:
        info = client.userinfo()
    except AuthenticationError:
        raise
    except SalesforceError:
        info = {}  # only needed as the default integration user (problem below)
    deploying_user = info.get("preferred_username")
    problems.extend(
        guarded("Reading UserPermissionAccess", lambda: _check_permissions(client)) or []
    )
    integration = integration_user or deploying_user
    if integration:
        problems.extend(
            guarded(
                "Reading the integration user",
                lambda: _check_integration_user(client, integration),
            )
            or []
        )
    else:
        problems.append(
            Problem(
                "Cannot tell which user these credentials log in as (OAuth userinfo): the "
                "integration user (the Outbound Message's User to send as) must be named",
                Setting.INTEGRATION_USER,
            )
        )
    problems.extend(_check_call_center(client))
    problems.extend(
        guarded(
            "Reading existing Outbound Messages (Tooling WorkflowOutboundMessage)",
            lambda: _check_existing_om(client, webhook_url),
        )
        or []
    )
    url_problems, url_warnings = check_webhook_url(webhook_url, real_deploy=True)
    problems.extend(url_problems)
    warnings.extend(url_warnings)
    described = guarded("Describing User", lambda: client.describe(SOBJECT_TYPE))
    custom = custom_user_fields(described) if described else ()
    return PreflightReport(
        salesforce_org_id=org_id,
        is_sandbox=sandbox,
        api_version=version,
        org_max_api_version=org_max,
        deploying_user=deploying_user,
        integration_user=integration,
        custom_fields=custom,
        problems=tuple(problems),
        warnings=tuple(warnings),
    )
