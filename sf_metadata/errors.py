"""The project's error module: the one error tree of agent-auto-provision.

Every error the toolkit raises on purpose is a subclass of :class:`AgentProvisionError`.
Messages say the problem in the words of Salesforce and of the store, never the control
that fixes it: a message that concerns one input names it with :class:`Setting` (on the
error, or on each :class:`Problem` line), and each surface adds its own hint (the CLI its
flags, the dashboard its fields). How each surface answers an error lives beside the code
that maps it: exit codes in ``receiver/cli/_errors.py``, HTTP statuses and SOAP faults in
``receiver/webhook.py`` and ``receiver/admin.py``.

::

    AgentProvisionError                    root; ``.problems`` lists one line per problem
    ├── UsageError                         the caller's input or configuration is wrong
    │   ├── InvalidOrganizationName        ORGANIZATION not 1-63 of [a-z0-9-], first [a-z0-9]
    │   ├── OrganizationExists             registering a name already registered
    │   ├── OrganizationNotFound           no such organization in the store
    │   ├── OperatorExists                 ``operator add`` for a username already taken
    │   ├── OperatorNotFound               no such dashboard operator
    │   ├── InvalidSalesforceId            not 15/18 alphanumerics, or wrong key prefix
    │   ├── CredentialsError               no complete credential set, unreadable key file
    │   ├── PlanNotFound                   no such reconcile plan, or one already applied
    │                                      or rejected
    │   ├── ReplayNotFound                 no failed notification kept for that provisioning
    │                                      log event in the organization
    │   ├── ReplayRefused                  a replay while the organization's feature is off
    │                                      (it would log each failure as ignored)
    │   └── StoreNotFound                  a command that only reads found no store at the
    │                                      database URL (nothing was created)
    ├── EnvelopeError                      an Outbound Message that cannot be taken
    │   ├── MalformedXml                   not well-formed, truncated, not UTF-8
    │   ├── ForbiddenXml                   DTD, entity declaration, external reference
    │   ├── NotAnOutboundMessage           not a SOAP 1.1 envelope with ``notifications``
    │   ├── MissingOrganizationId          no (or an invalid) ``OrganizationId``
    │   └── TooManyNotifications           more than 100 ``Notification`` elements
    ├── NotificationError                  one notification cannot be decided: recorded as
    │                                      failed and acknowledged (permanent)
    ├── StoreUnavailable                   the store cannot be reached or the transaction
    │   │                                  failed for a transient reason: never acknowledged,
    │   │                                  Salesforce retries
    │   └── TransactionConflict            PostgreSQL broke a deadlock or a serialization
    │                                      conflict (SQLSTATE 40P01 / 40001): running the
    │                                      whole transaction again may succeed at once
    ├── StoreOutdated                      the store's schema is older than this release and
    │                                      a command that only reads does not migrate it
    ├── ReconcileHeld                      the deletion guard held a reconcile plan: nothing
    │                                      written; ``.plan_id`` names it
    └── SalesforceError                    a Salesforce org answered, or could not be reached
        ├── AuthenticationError            login failed / expired session that cannot be
        │                                  refreshed
        ├── PreflightError                 the preflight found problems; ``.problems`` has
        │                                  each, with its Setup label and API name
        ├── DeployFailed                   the Metadata API deploy finished with failures,
        │                                  or the flow stayed inactive; ``.deploy_id``
        ├── DeployTimeout                  checkDeployStatus did not finish in time;
        │                                  ``.deploy_id`` so it can be followed up
        └── SalesforceUnreadable           Salesforce could not be read or reached (a page
                                           failed, the org is unreachable): nothing written

Permanent vs transient, for the receiver (reference ``outbound-receiver-bugs.md`` B15 and
``provisioning-pitfalls.md`` B12): :class:`EnvelopeError` and organization/token problems
are answered with a SOAP fault so an admin can fix the configuration while Salesforce
retries; :class:`NotificationError` is permanent (recorded, acknowledged);
:class:`StoreUnavailable` is transient (no Ack).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "AgentProvisionError",
    "AuthenticationError",
    "CredentialsError",
    "DeployFailed",
    "DeployTimeout",
    "EnvelopeError",
    "ForbiddenXml",
    "InvalidOrganizationName",
    "InvalidSalesforceId",
    "JobBusy",
    "MalformedXml",
    "MissingOrganizationId",
    "NotAnOutboundMessage",
    "NotificationError",
    "OperatorExists",
    "OperatorNotFound",
    "OrganizationExists",
    "OrganizationNotFound",
    "PlanNotFound",
    "PreflightError",
    "Problem",
    "ReconcileHeld",
    "ReplayNotFound",
    "ReplayRefused",
    "SalesforceError",
    "SalesforceUnreadable",
    "Setting",
    "StoreNotFound",
    "StoreOutdated",
    "StoreUnavailable",
    "TransactionConflict",
    "TooManyNotifications",
    "UsageError",
    "setting_of",
]


class Setting(StrEnum):
    """The input a problem concerns, so each surface can point at its own control (the CLI
    at a flag, the dashboard at a field) without the message naming either."""

    DATABASE_URL = "database URL"
    ORGANIZATION = "organization"
    BASE_URL = "base URL"
    SALESFORCE_ORG_ID = "Salesforce org id"
    API_VERSION = "API version"
    TRIGGER = "trigger"
    CUSTOM_FIELD = "custom field"
    INTEGRATION_USER = "integration user"
    ACCESS_TOKEN = "access token"
    INSTANCE_URL = "instance URL"
    PRIVATE_KEY_FILE = "private key file"
    LOGIN_DOMAIN = "login domain"
    CREDENTIALS = "credentials"
    MAX_DELETIONS = "maximum deletions"
    APPROVAL = "approval of a held plan"
    SECRET_KEY = "secret key"


class Problem(str):
    """One problem line (a ``str``) that may name the :class:`Setting` it concerns in
    ``.setting`` (``None`` when it concerns none)."""

    setting: Setting | None

    def __new__(cls, text: str, setting: Setting | None = None) -> Problem:
        line = super().__new__(cls, text)
        line.setting = setting
        return line


def setting_of(line: str) -> Setting | None:
    """The :class:`Setting` a problem line concerns (``None`` for a plain ``str``)."""
    return line.setting if isinstance(line, Problem) else None


class AgentProvisionError(Exception):
    """Root of the tree.

    ``message`` is one line saying the problem. ``problems`` (a tuple of such lines) holds
    every problem when one error reports several at once (preflight); it defaults to
    ``(message,)``. ``setting`` names the input the message concerns (the default
    ``problems`` line carries it as a :class:`Problem`).
    """

    def __init__(
        self,
        message: str,
        *,
        problems: Iterable[str] | None = None,
        setting: Setting | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.setting = setting if setting is not None else setting_of(message)
        self.problems: tuple[str, ...] = (
            tuple(problems) if problems is not None else (Problem(message, self.setting),)
        )

    def __str__(self) -> str:
        return self.message


class UsageError(AgentProvisionError):
    """The caller's input or configuration is wrong; fixable by proper use."""


class InvalidOrganizationName(UsageError):
    """ORGANIZATION is not 1-63 lowercase letters, digits and hyphens starting with a letter
    or digit."""


class OrganizationExists(UsageError):
    """Registering an organization under a name that is already registered."""


class OrganizationNotFound(UsageError):
    """No organization of that name is registered in the store."""


class OperatorExists(UsageError):
    """``operator add`` named a username that is already taken (compared casefolded)."""


class OperatorNotFound(UsageError):
    """No dashboard operator of that username."""


class InvalidSalesforceId(UsageError):
    """A value is not a Salesforce id: 15 or 18 ASCII letters and digits (optionally of an
    expected key prefix such as ``00D`` or ``005``)."""


class CredentialsError(UsageError):
    """No complete set of Salesforce credentials, or one that cannot be used (unreadable
    private key file, unknown domain). ``missing`` names the pieces a nearly complete set
    lacks (keys of ``deployer.credentials.CREDENTIAL_OPTIONS``), for each surface to name
    its own controls."""

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        problems: Iterable[str] | None = None,
        setting: Setting | None = None,
    ) -> None:
        super().__init__(message, problems=problems, setting=setting)
        self.missing: tuple[str, ...] = tuple(missing)


class EnvelopeError(AgentProvisionError):
    """The request body is not an Outbound Message we can take."""


class MalformedXml(EnvelopeError):
    """Not well-formed XML (truncated, bad encoding, junk after the root)."""


class ForbiddenXml(EnvelopeError):
    """A DTD, entity declaration or external reference: refused before any expansion."""


class NotAnOutboundMessage(EnvelopeError):
    """Well-formed XML that is not a SOAP 1.1 envelope whose Body holds
    ``{http://soap.sforce.com/2005/09/outbound}notifications``."""


class MissingOrganizationId(EnvelopeError):
    """The ``notifications`` element has no ``OrganizationId``, or one that is not a
    Salesforce organization id."""


class TooManyNotifications(EnvelopeError):
    """More than 100 ``Notification`` elements (Salesforce sends at most 100 per message,
    per the Outbound Messaging WSDL ``maxOccurs="100"``)."""


class NotificationError(AgentProvisionError):
    """One notification cannot be decided (no IsActive, no ``sf:Id``, invalid id, username
    collision). Permanent: recorded as failed with this message as reason, and acknowledged."""


class StoreUnavailable(AgentProvisionError):
    """The store cannot be reached, or a transaction failed for a transient reason
    (connection lost, lock timeout, serialization failure). Nothing was applied; the
    receiver does not acknowledge, so Salesforce retries."""


class StoreNotFound(UsageError):
    """A command that only reads found no store where the database URL points: no SQLite
    file there, or a database without the agent-provision schema. Nothing was created;
    ``setting`` is :attr:`Setting.DATABASE_URL`."""


class StoreOutdated(AgentProvisionError):
    """The store's schema revision is older than this release's; a command that only reads
    does not migrate it (the next command that writes, or ``serve``, does)."""


class TransactionConflict(StoreUnavailable):
    """PostgreSQL aborted the transaction to break a deadlock (SQLSTATE ``40P01``) or a
    serialization conflict (``40001``). Nothing was applied; the webhook runs the whole
    transaction again a few times before answering 503 (PostgreSQL "Serialization Failure
    Handling": such transactions should simply be retried)."""


class SalesforceError(AgentProvisionError):
    """A Salesforce org answered with an error, or could not be reached."""


class AuthenticationError(SalesforceError):
    """Login failed, or the session expired and the credential kind cannot refresh it."""


class PreflightError(SalesforceError):
    """The deploy preflight found problems; ``problems`` lists each, naming the Setup
    label and the API name to fix."""


class DeployFailed(SalesforceError):
    """A Metadata API deploy finished without our components succeeding.

    ``deploy_id`` is the Salesforce deploy id (``0Af…``) when one was given.
    """

    def __init__(
        self, message: str, *, problems: Iterable[str] | None = None, deploy_id: str | None = None
    ) -> None:
        super().__init__(message, problems=problems)
        self.deploy_id = deploy_id


class DeployTimeout(SalesforceError):
    """checkDeployStatus did not report ``done`` before the overall timeout.

    ``deploy_id`` lets an admin follow the deploy up in Setup > Deployment Status.
    """

    def __init__(self, message: str, *, deploy_id: str) -> None:
        super().__init__(message)
        self.deploy_id = deploy_id


class PlanNotFound(UsageError):
    """No reconcile plan of that id for the organization, or one that can no longer be
    applied (already applied or rejected)."""


class ReplayNotFound(UsageError):
    """No failed notification is kept for that provisioning log event in the organization
    (it did not fail, belongs to another organization, or its log entry was pruned)."""


class ReplayRefused(UsageError):
    """A replay was asked for while the organization's Agent Auto Provision is off: each
    failure would be decided as ``ignored`` and count as replayed. Nothing was replayed."""


class SalesforceUnreadable(SalesforceError):
    """Reconcile could not read the org's Users (a page failed or timed out, the API
    allowance is used up, the result is not a query result or is of another org): nothing
    was written, an unreadable page is never an absence."""


class ReconcileHeld(AgentProvisionError):
    """The deletion guard held a reconcile plan (more deprovisions than allowed): nothing
    was written; ``plan_id`` names the plan to approve or reject."""

    def __init__(self, message: str, *, plan_id: str, setting: Setting | None = None) -> None:
        super().__init__(message, setting=setting)
        self.plan_id = plan_id


class JobBusy(AgentProvisionError):
    """A job of that kind is already running for the organization (another worker, host or
    command started it); ``job_id`` names it. Nothing was started."""

    def __init__(self, message: str, *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
