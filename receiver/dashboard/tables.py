"""Store tables of the dashboard, on the shared ``SQLModel.metadata`` (migration
``0008_dashboard``)::

    dashboard_operator          id PK; username (as typed), username_key (casefolded,
                                unique), password_hash (argon2id, PHC string),
                                all_organizations, created_at, password_changed_at
    dashboard_operator_org      (operator_id, organization_id) PK: the organizations of an
                                operator that does not manage all of them
    dashboard_session           id PK = sha256 hex of the cookie's random token (the token
                                itself is never stored); operator_id, created_at,
                                last_seen_at, ended_at, end_reason, client_address
    dashboard_signin_failure    id PK; kind ("username" | "address"), subject (sha256 hex of
                                the casefolded username or of the client address), at

It also adds indexes to the receiver's tables for the dashboard's reads: the provisioning
log by Salesforce user (an agent's timeline), by action (failed ones), by date, and by
source (migration 0018); the Users page's name order is an expression index created by
the migration only (SQLite
cannot reflect expression indexes, so it is not declared here; see
:data:`UNMODELLED_INDEXES`), and so are the search tables of :data:`UNMODELLED_TABLES`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from receiver.models import ProvisioningEvent, ProvisioningMessage, UTCDateTime

__all__ = [
    "UNMODELLED_INDEXES",
    "UNMODELLED_TABLES",
    "Operator",
    "OperatorOrganization",
    "OperatorSession",
    "SignInFailure",
]

#: Indexes the migrations create that the metadata cannot describe portably (expression
#: indexes): the agent list in name order per organization; on PostgreSQL the Users
#: page's trigram (pg_trgm GIN) indexes.
UNMODELLED_INDEXES = (
    "ix_agent_directory_name",
    "ix_agent_search_name_trgm",
    "ix_agent_search_username_trgm",
)

#: Tables the migrations create on SQLite only, outside the metadata: the Users page's
#: search document table and its FTS5 index with the index's own shadow tables
#: (``receiver.dashboard.directory``, migration ``0010_dashboard_search``; new agents are
#: indexed by ``receiver.agent_search``), and the switch of the insert triggers that
#: ``0014_search_index_bulk`` gated and ``0021_search_index_by_writer`` dropped (kept for a
#: process of the previous release).
UNMODELLED_TABLES = (
    "agent_search_doc",
    "agent_search_pause",
    "agent_search",
    "agent_search_data",
    "agent_search_idx",
    "agent_search_docsize",
    "agent_search_config",
)


def _utc(*, nullable: bool = False, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class Operator(SQLModel, table=True):
    """A person who signs in to the dashboard."""

    __tablename__ = "dashboard_operator"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=320)
    username_key: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    password_hash: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    all_organizations: bool = Field(default=True)
    created_at: datetime = Field(sa_column=_utc())
    password_changed_at: datetime = Field(sa_column=_utc())


class OperatorOrganization(SQLModel, table=True):
    """One organization of an operator limited to named organizations."""

    __tablename__ = "dashboard_operator_org"

    operator_id: int = Field(
        sa_column=sa.Column(
            sa.Integer(),
            sa.ForeignKey("dashboard_operator.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    organization_id: str = Field(
        sa_column=sa.Column(
            sa.String(63),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )


class OperatorSession(SQLModel, table=True):
    """A signed-in browser session (server side, so it can be revoked)."""

    __tablename__ = "dashboard_session"
    __table_args__ = (sa.Index("ix_dashboard_session_operator_id", "operator_id"),)

    id: str = Field(primary_key=True, max_length=64)
    operator_id: int = Field(
        sa_column=sa.Column(
            sa.Integer(),
            sa.ForeignKey("dashboard_operator.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    created_at: datetime = Field(sa_column=_utc())
    last_seen_at: datetime = Field(sa_column=_utc())
    ended_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    end_reason: str | None = Field(default=None, max_length=40)
    client_address: str | None = Field(default=None, max_length=64)


class SignInFailure(SQLModel, table=True):
    """One wrong password (or unknown username), counted per username and per address."""

    __tablename__ = "dashboard_signin_failure"
    __table_args__ = (sa.Index("ix_dashboard_signin_failure_subject", "kind", "subject", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=10)
    subject: str = Field(max_length=64)
    at: datetime = Field(sa_column=_utc())


# Indexes on the receiver's log tables for the dashboard's pages (declared here so that the
# metadata and the migration agree; they attach to the tables of receiver.models).
sa.Index(
    "ix_provisioning_event_crm_id",
    ProvisioningEvent.__table__.c.crm_id,  # type: ignore[attr-defined]
    ProvisioningEvent.__table__.c.message_id,  # type: ignore[attr-defined]
)
sa.Index(
    "ix_provisioning_event_action",
    ProvisioningEvent.__table__.c.action,  # type: ignore[attr-defined]
    ProvisioningEvent.__table__.c.message_id,  # type: ignore[attr-defined]
)
sa.Index(
    "ix_provisioning_message_organization_id_received_at",
    ProvisioningMessage.__table__.c.organization_id,  # type: ignore[attr-defined]
    ProvisioningMessage.__table__.c.received_at,  # type: ignore[attr-defined]
)
sa.Index(  # the log's Source filter (migration 0018)
    "ix_provisioning_message_organization_id_source",
    ProvisioningMessage.__table__.c.organization_id,  # type: ignore[attr-defined]
    ProvisioningMessage.__table__.c.source,  # type: ignore[attr-defined]
    ProvisioningMessage.__table__.c.id,  # type: ignore[attr-defined]
)
sa.Index(
    "ix_provisioning_message_organization_id_outcome",
    ProvisioningMessage.__table__.c.organization_id,  # type: ignore[attr-defined]
    ProvisioningMessage.__table__.c.outcome,  # type: ignore[attr-defined]
    ProvisioningMessage.__table__.c.id,  # type: ignore[attr-defined]
)
