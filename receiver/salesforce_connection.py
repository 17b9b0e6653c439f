"""The organization's stored Salesforce connection (CONTRACT section 7): its table and the
functions that read and write it (inside the caller's transaction, never committing).

Table ``salesforce_connection`` (one row per organization)::

    organization_id PK (FK, cascade); kind (session | jwt | client-credentials | soap-login |
    oauth); instance_url; salesforce_org_id (18); is_sandbox; username, user_id (as
    Salesforce's identity answer gives them); login_url (where OAuth tokens are refreshed
    and revoked); secrets_encrypted (Fernet ciphertext of a JSON object: access and refresh
    tokens, consumer key and secret, private key, password, security token); connected_at,
    last_used_at, refreshed_at; status (connected | reconnect) and status_reason

Secrets are encrypted with the store's key (``receiver/secrets.py``) and only this module
decrypts them; :func:`connection_json` and :class:`ConnectionInfo` never hold one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import Field, Session, SQLModel, select

from receiver.models import UTCDateTime, organization_column
from sf_metadata.errors import CredentialsError

__all__ = [
    "CONNECTED",
    "RECONNECT",
    "ConnectionInfo",
    "SalesforceConnection",
    "connection_info",
    "connection_json",
    "delete_connection",
    "list_connections",
    "mark_reconnect",
    "mark_used",
    "read_secrets",
    "save_connection",
    "write_secrets",
]

CONNECTED = "connected"
RECONNECT = "reconnect"


def _utc(*, nullable: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable)


class SalesforceConnection(SQLModel, table=True):
    """One organization's stored Salesforce connection (see the module docstring)."""

    __tablename__ = "salesforce_connection"

    organization_id: str = Field(sa_column=organization_column(primary_key=True))
    kind: str = Field(max_length=30)
    instance_url: str = Field(max_length=2000)
    salesforce_org_id: str = Field(max_length=18)
    is_sandbox: bool = Field(default=False)
    username: str | None = Field(default=None, max_length=255)
    user_id: str | None = Field(default=None, max_length=18)
    login_url: str | None = Field(default=None, max_length=2000)
    secrets_encrypted: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    connected_at: datetime = Field(sa_column=_utc())
    last_used_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    refreshed_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    status: str = Field(default=CONNECTED, max_length=20)
    status_reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))


@dataclass(frozen=True)
class ConnectionInfo:
    """What may be shown of a connection (no secret)."""

    organization: str
    kind: str
    instance_url: str
    salesforce_org_id: str
    is_sandbox: bool
    username: str | None
    connected_at: datetime
    last_used_at: datetime | None
    status: str
    status_reason: str | None

    @property
    def needs_reconnect(self) -> bool:
        """Whether Salesforce refused the stored credentials (revoked or expired)."""
        return self.status == RECONNECT


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def write_secrets(values: dict[str, str | None], key: bytes) -> str:
    """Fernet ciphertext of the JSON of ``values`` (``None`` values dropped)."""
    data = json.dumps({k: v for k, v in values.items() if v is not None}, sort_keys=True)
    return Fernet(key).encrypt(data.encode("utf-8")).decode("ascii")


def read_secrets(row: SalesforceConnection, key: bytes) -> dict[str, str]:
    """The decrypted secrets of ``row``. Raises :class:`CredentialsError` when the store's
    key is not the one they were encrypted with."""
    try:
        raw = Fernet(key).decrypt(row.secrets_encrypted.encode("ascii"))
    except (InvalidToken, ValueError):
        raise CredentialsError(
            "the stored Salesforce connection cannot be decrypted with this secret key: "
            "restore the key file (or AGENT_PROVISION_SECRET_KEY) that was used, or connect "
            "again"
        ) from None
    data = json.loads(raw)
    return {str(k): str(v) for k, v in data.items()}


def save_connection(
    session: Session,
    *,
    organization: str,
    kind: str,
    instance_url: str,
    salesforce_org_id: str,
    is_sandbox: bool,
    username: str | None,
    user_id: str | None,
    login_url: str | None,
    secrets: dict[str, str | None],
    key: bytes,
    now: datetime,
) -> SalesforceConnection:
    """Store (or replace) the organization's connection, status ``connected``."""
    row = session.get(SalesforceConnection, organization, with_for_update=True)
    if row is None:
        row = SalesforceConnection(
            organization_id=organization,
            kind=kind,
            instance_url=instance_url,
            salesforce_org_id=salesforce_org_id,
            secrets_encrypted="",
            connected_at=now,
        )
    row.kind = kind
    row.instance_url = instance_url
    row.salesforce_org_id = salesforce_org_id
    row.is_sandbox = is_sandbox
    row.username = username
    row.user_id = user_id
    row.login_url = login_url
    row.secrets_encrypted = write_secrets(secrets, key)
    row.connected_at = now
    row.last_used_at = now
    row.refreshed_at = None
    row.status = CONNECTED
    row.status_reason = None
    session.add(row)
    session.flush()
    return row


def delete_connection(session: Session, organization: str) -> SalesforceConnection | None:
    """Forget the connection; return the row it was (its secrets still readable by the
    caller, to revoke a token), or ``None`` when there was none."""
    row = session.get(SalesforceConnection, organization, with_for_update=True)
    if row is not None:
        session.delete(row)
        session.flush()
    return row


def mark_used(session: Session, organization: str, now: datetime) -> None:
    """Record that the connection was just used successfully."""
    row = session.get(SalesforceConnection, organization)
    if row is not None:
        row.last_used_at = now
        if row.status != CONNECTED:
            row.status, row.status_reason = CONNECTED, None
        session.add(row)


def mark_reconnect(session: Session, organization: str, reason: str) -> None:
    """Record that Salesforce refused the stored credentials: the CRM page says
    "Reconnect" with ``reason``."""
    row = session.get(SalesforceConnection, organization)
    if row is not None:
        row.status, row.status_reason = RECONNECT, reason[:1000]
        session.add(row)


def _info(row: SalesforceConnection) -> ConnectionInfo:
    return ConnectionInfo(
        organization=row.organization_id,
        kind=row.kind,
        instance_url=row.instance_url,
        salesforce_org_id=row.salesforce_org_id,
        is_sandbox=row.is_sandbox,
        username=row.username,
        connected_at=row.connected_at,
        last_used_at=row.last_used_at,
        status=row.status,
        status_reason=row.status_reason,
    )


def connection_info(session: Session, organization: str) -> ConnectionInfo | None:
    """The organization's connection without secrets, or ``None``."""
    row = session.get(SalesforceConnection, organization)
    return _info(row) if row is not None else None


def list_connections(session: Session) -> list[ConnectionInfo]:
    """Every stored connection (no secrets), by organization."""
    rows = session.exec(
        select(SalesforceConnection).order_by(SalesforceConnection.organization_id)
    ).all()
    return [_info(r) for r in rows]


def connection_json(info: ConnectionInfo | None) -> dict[str, Any] | None:
    """``org show --json``'s ``salesforceConnection``: ``null`` or ``{"instanceUrl",
    "kind", "username", "connectedAt"}`` (CONTRACT section 7)."""
    if info is None:
        return None
    return {
        "instanceUrl": info.instance_url,
        "kind": info.kind,
        "username": info.username,
        "connectedAt": _iso(info.connected_at),
    }
