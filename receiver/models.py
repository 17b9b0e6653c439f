"""The store's tables (SQLModel), owned by the receiver. Schema changes go through
``receiver/migrations`` (alembic); ``docs/architecture.md`` "Store" lists the tables::

    organization            id (our name) PK; salesforce_org_id (18), base_url,
                            token_hash (sha256 hex), token_encrypted (Fernet), enabled
    agent                   id (uuid4 hex) PK; unique (organization_id, crm_id);
                            unique (organization_id, username_key) where username_key is
                            not null; data = the agent JSON of CONTRACT section 2
    tombstone               (organization_id, crm_id) PK; agent_id, system_modstamp,
                            deprovisioned_at: what is left of a deprovisioned agent
    agent_session           id (token_urlsafe) PK; organization_id, agent_id, crm_id,
                            started_at, ended_at, end_reason
    processed_notification  (organization_id, notification_id) PK; processed_at (indexed,
                            pruned after the retention)
    provisioning_message    id PK; organization_id, received_at, action_id, outcome,
                            notification_count, detail; index (organization_id, id desc)
    provisioning_event      id PK; message_id, position, notification_id, crm_id, action,
                            reason
    deployment              id PK; organization_id, created_at, kind, trigger, api_version,
                            components (JSON list of str), deploy_id, outcome, problems

All ids of Salesforce records are canonical 18-character ids (``sf_metadata.ids``). Every
timestamp is a timezone-aware UTC ``datetime``: stored as ``DateTime(timezone=True)``; on
SQLite (which has no time zone type) it is stored as naive UTC text and read back as aware
UTC by :class:`UTCDateTime`. No table ever holds a SessionId or a plain-text token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from deployer.kinds import DeploymentKind, DeploymentOutcome, Trigger
from receiver.outcomes import MessageOutcome

__all__ = [
    "Agent",
    "AgentSession",
    "Deployment",
    "DeploymentBase",
    "DeploymentCreate",
    "DeploymentPublic",
    "Organization",
    "OrganizationBase",
    "ProcessedNotification",
    "ProvisioningEvent",
    "ProvisioningMessage",
    "Tombstone",
    "StrEnumString",
    "UTCDateTime",
    "metadata",
]


def organization_column(*, primary_key: bool = False) -> sa.Column[str]:
    """The ``organization_id`` column of an organization's rows: ``organization.id``
    (``String(63)``), deleted with the organization (``ON DELETE CASCADE``), never null;
    part of the primary key when ``primary_key``."""
    return sa.Column(
        sa.String(63),
        sa.ForeignKey("organization.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only takes aware datetimes and always gives aware UTC.

    Binding a naive datetime raises ``ValueError`` (a programming error: the clock passed in
    must be aware). SQLite stores naive UTC text; PostgreSQL ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store takes aware UTC datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumString(TypeDecorator[E], Generic[E]):
    """A ``VARCHAR(length)`` column holding a ``StrEnum``'s values: the value is stored,
    the member is read back (a value the enum lacks raises ``ValueError``). No database
    enum type or check constraint, so adding a member needs no migration."""

    impl = sa.String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


def _enum_column(enum: type[StrEnum], length: int, *, nullable: bool = False) -> Any:
    return sa.Column(StrEnumString(enum, length), nullable=nullable)


def _utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


# --- organization -----------------------------------------------------------------------


class OrganizationBase(SQLModel):
    """Fields an admin sets: ``id`` is our organization name (CONTRACT section 4)."""

    id: str = Field(primary_key=True, max_length=63)
    salesforce_org_id: str = Field(max_length=18)
    base_url: str = Field(max_length=2000)


class Organization(OrganizationBase, table=True):
    """One customer organization. ``token_hash`` is the sha256 hex of the webhook token;
    ``token_encrypted`` its Fernet ciphertext (``receiver.secrets``)."""

    __tablename__ = "organization"

    token_hash: str = Field(max_length=64)
    token_encrypted: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    enabled: bool = Field(default=False)
    created_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


# --- agents, tombstones, sessions --------------------------------------------------------


class Agent(SQLModel, table=True):
    """A provisioned agent. ``data`` is ``AgentRecord.to_json()``; ``username_key`` is the
    casefolded username (``None`` when the agent has no username)."""

    __tablename__ = "agent"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "crm_id", name="uq_agent_organization_crm_id"),
        sa.Index(
            "uq_agent_organization_username_key",
            "organization_id",
            "username_key",
            unique=True,
            postgresql_where=sa.text("username_key IS NOT NULL"),
            sqlite_where=sa.text("username_key IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    organization_id: str = Field(sa_column=organization_column())
    crm_id: str = Field(max_length=18)
    username: str | None = Field(default=None, max_length=320)
    username_key: str | None = Field(default=None, max_length=320)
    system_modstamp: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    data: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    created_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


class Tombstone(SQLModel, table=True):
    """What is kept of a deprovisioned (or never provisioned, inactive) Salesforce user, so
    a late, older message cannot bring it back and a newer one restores the same agent id,
    and the pages can still name it."""

    __tablename__ = "tombstone"

    organization_id: str = Field(sa_column=organization_column(primary_key=True))
    crm_id: str = Field(primary_key=True, max_length=18)
    agent_id: str | None = Field(default=None, max_length=32)
    system_modstamp: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    deprovisioned_at: datetime = Field(sa_column=_utc_column())
    #: the user's Name as its deprovisioning change carried it (migration 0016; ``None``
    #: for older tombstones and users without a Name)
    name: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))


class AgentSession(SQLModel, table=True):
    """A session of an agent in the host app. ``agent_id`` is not a foreign key: the agent
    row is deleted on deprovision while its ended sessions stay."""

    __tablename__ = "agent_session"
    __table_args__ = (sa.Index("ix_agent_session_agent_id", "agent_id", "ended_at"),)

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(sa_column=organization_column())
    agent_id: str = Field(max_length=32)
    crm_id: str = Field(max_length=18)
    started_at: datetime = Field(sa_column=_utc_column())
    ended_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    end_reason: str | None = Field(default=None, max_length=40)


class ProcessedNotification(SQLModel, table=True):
    """A ``Notification/Id`` already applied (18-character), kept for the retention."""

    __tablename__ = "processed_notification"

    organization_id: str = Field(sa_column=organization_column(primary_key=True))
    notification_id: str = Field(primary_key=True, max_length=18)
    processed_at: datetime = Field(sa_column=_utc_column(index=True))


# --- provisioning log ---------------------------------------------------------------------


class ProvisioningMessage(SQLModel, table=True):
    """A message that passed the token check (provisioning log)."""

    __tablename__ = "provisioning_message"
    __table_args__ = (
        sa.Index(
            "ix_provisioning_message_organization_id_id", "organization_id", sa.text("id DESC")
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(sa_column=organization_column())
    received_at: datetime = Field(sa_column=_utc_column())
    action_id: str | None = Field(default=None, max_length=64)
    outcome: MessageOutcome = Field(sa_column=_enum_column(MessageOutcome, 40))
    notification_count: int = Field(default=0)
    detail: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    #: Where the decisions came from: ``outbound-message``, ``reconcile`` or ``replay``
    #: (``receiver.provisioning.SourceKind``); ``source_ref`` names the reconcile run or
    #: the replayed event.
    source: str = Field(
        default="outbound-message",
        max_length=20,
        sa_column_kwargs={"server_default": "outbound-message"},
    )
    source_ref: str | None = Field(default=None, max_length=64)


class ProvisioningEvent(SQLModel, table=True):
    """One notification of a logged message."""

    __tablename__ = "provisioning_event"
    __table_args__ = (sa.Index("ix_provisioning_event_message_id", "message_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(
        sa_column=sa.Column(
            sa.Integer(),
            sa.ForeignKey("provisioning_message.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    position: int
    notification_id: str | None = Field(default=None, max_length=18)
    crm_id: str | None = Field(default=None, max_length=18)
    action: str = Field(max_length=20)
    reason: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))


# --- deployments (written by receiver/deployments.py) -------------------------------------


class DeploymentBase(SQLModel):
    """One check-only, deploy or undeploy run against a Salesforce org.

    - ``kind``: ``"check-only" | "deploy" | "undeploy"``
    - ``trigger``: ``"workflow" | "flow" | None``
    - ``components``: e.g. ``["WorkflowOutboundMessage:User.X", "WorkflowRule:User.Y"]``
    - ``deploy_id``: the Salesforce deploy id (``0Af...``) when one was given
    - ``outcome``: ``"succeeded" | "failed" | "timeout" | "inactive-flow" | "unknown"``
      (``unknown``: an error after Salesforce gave the deploy id; the components may be in
      the org, so ``undeploy`` removes them too)
    - ``problems``: one line per problem
    """

    organization_id: str = Field(max_length=63)
    kind: DeploymentKind = Field(max_length=20)
    trigger: Trigger | None = Field(default=None, max_length=20)
    api_version: str = Field(max_length=10)
    components: list[str] = Field(default_factory=list)
    deploy_id: str | None = Field(default=None, max_length=40)
    outcome: DeploymentOutcome = Field(max_length=20)
    problems: list[str] = Field(default_factory=list)


class DeploymentCreate(DeploymentBase):
    """Input of ``record_deployment``."""


class DeploymentPublic(DeploymentBase):
    """A recorded deployment."""

    id: int
    created_at: datetime


class Deployment(DeploymentBase, table=True):
    """The deployment table."""

    __tablename__ = "deployment"
    __table_args__ = (sa.Index("ix_deployment_organization_id_id", "organization_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(sa_column=organization_column())
    created_at: datetime = Field(sa_column=_utc_column())
    kind: DeploymentKind = Field(sa_column=_enum_column(DeploymentKind, 20))
    trigger: Trigger | None = Field(
        default=None, sa_column=_enum_column(Trigger, 20, nullable=True)
    )
    outcome: DeploymentOutcome = Field(sa_column=_enum_column(DeploymentOutcome, 20))
    components: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    problems: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    #: The Outbound Message endpoint this run deployed, without its token, and the
    #: SHA-256 hex of that token (as ``organization.token_hash``), so the CRM page can say
    #: when the deployed endpoint is not the current one (``None`` for runs recorded
    #: before migration ``0010_dashboard_search``, and for undeploys).
    endpoint: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    token_sha256: str | None = Field(default=None, max_length=64)


metadata = SQLModel.metadata
