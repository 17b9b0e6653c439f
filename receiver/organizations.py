"""Organizations: our name for a customer, its Salesforce org id, its webhook token.

Every function takes the caller's :class:`sqlmodel.Session` (keyword-only ``session``) and
does not commit: run it inside ``receiver.db.transaction``. Tokens are described in
``receiver.secrets`` (SHA-256 for the check, Fernet ciphertext to show it again).

Rules (CONTRACT sections 3 and 4): ORGANIZATION is 1 to 63 of ``[a-z0-9-]``, starting with a
letter or digit; the Salesforce org id (key prefix ``00D``, 15 or 18 characters) is stored
as its 18-character form; a new organization has the feature disabled; the webhook URL is
``{base_url}`` + ``/v2/features/agent-auto-provision/organizations/{name}`` +
``/integrations/provider/webhook?token={token}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from receiver.models import Organization
from receiver.org_address import (
    DEFAULT_BASE_URL,
    validate_organization_name,
    webhook_path,
    webhook_url_for,
)
from receiver.secrets import decrypt_token, encrypt_token, hash_token, new_token, token_matches
from sf_metadata.errors import (
    InvalidSalesforceId,
    OrganizationExists,
    OrganizationNotFound,
    Setting,
    UsageError,
)
from sf_metadata.ids import ORGANIZATION, canonical_id

__all__ = [
    "DEFAULT_BASE_URL",
    "add_organization",
    "get_organization",
    "list_organizations",
    "organization_json",
    "reveal_token",
    "rotate_token",
    "set_enabled",
    "update_organization",
    "validate_base_url",
    "validate_organization_name",
    "verify_token",
    "webhook_path",
    "webhook_url",
]


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def validate_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, if it is an absolute http(s) URL with no query
    or fragment. Raises :class:`~sf_metadata.errors.UsageError`."""
    parts = urlsplit(base_url.strip()) if isinstance(base_url, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.query
        or parts.fragment
    ):
        raise UsageError(
            f"base URL {base_url!r} is invalid: it is where Salesforce reaches this service, "
            "an http(s) URL without query, such as https://provision.example.com",
            setting=Setting.BASE_URL,
        )
    return base_url.strip().rstrip("/")


def _org_id(salesforce_org_id: str) -> str:
    try:
        return canonical_id(salesforce_org_id, ORGANIZATION)
    except InvalidSalesforceId as error:
        raise InvalidSalesforceId(
            f"Salesforce org id: {error.message} (Setup > Company Information shows the "
            "Salesforce.com Organization ID, 00D...)",
            setting=Setting.SALESFORCE_ORG_ID,
        ) from None


def get_organization(session: Session, name: str) -> Organization:
    """The organization called ``name``. Raises
    :class:`~sf_metadata.errors.OrganizationNotFound`."""
    org = session.get(Organization, name) if isinstance(name, str) else None
    if org is None:
        raise OrganizationNotFound(f"organization {name!r} is not registered")
    return org


def list_organizations(session: Session) -> list[Organization]:
    """All organizations, by name."""
    query = select(Organization).order_by(col(Organization.id))
    return list(session.exec(query).all())


def add_organization(
    session: Session,
    *,
    name: str,
    salesforce_org_id: str,
    key: bytes,
    base_url: str = DEFAULT_BASE_URL,
    now: datetime | None = None,
) -> tuple[Organization, str]:
    """Register an organization (feature disabled) with a new token; returns it and the token.

    Raises :class:`InvalidOrganizationName`, :class:`InvalidSalesforceId` (not a ``00D``
    id), :class:`UsageError` (bad base URL), :class:`OrganizationExists`.
    """
    validate_organization_name(name)
    org_id = _org_id(salesforce_org_id)
    base = validate_base_url(base_url)
    if session.get(Organization, name) is not None:
        raise OrganizationExists(f"organization {name!r} is already registered")
    token = new_token()
    stamp = _now(now)
    org = Organization(
        id=name,
        salesforce_org_id=org_id,
        base_url=base,
        token_hash=hash_token(token),
        token_encrypted=encrypt_token(token, key),
        enabled=False,
        created_at=stamp,
        updated_at=stamp,
    )
    session.add(org)
    session.flush()
    return org, token


def set_enabled(
    session: Session, *, name: str, enabled: bool, now: datetime | None = None
) -> Organization:
    """Turn the feature on or off. Raises :class:`OrganizationNotFound`."""
    org = get_organization(session, name)
    org.enabled = enabled
    org.updated_at = _now(now)
    session.add(org)
    session.flush()
    return org


def update_organization(
    session: Session,
    *,
    name: str,
    base_url: str | None = None,
    salesforce_org_id: str | None = None,
    now: datetime | None = None,
) -> Organization:
    """Change the base URL and/or Salesforce org id (after a sandbox refresh, say); the
    token is kept. Raises :class:`OrganizationNotFound`, :class:`InvalidSalesforceId`,
    :class:`UsageError`."""
    org = get_organization(session, name)
    if base_url is not None:
        org.base_url = validate_base_url(base_url)
    if salesforce_org_id is not None:
        org.salesforce_org_id = _org_id(salesforce_org_id)
    org.updated_at = _now(now)
    session.add(org)
    session.flush()
    return org


def rotate_token(session: Session, *, name: str, key: bytes, now: datetime | None = None) -> str:
    """Replace the token (the old one stops working at commit); returns the new one.
    Raises :class:`OrganizationNotFound`."""
    org = get_organization(session, name)
    token = new_token()
    org.token_hash = hash_token(token)
    org.token_encrypted = encrypt_token(token, key)
    org.updated_at = _now(now)
    session.add(org)
    session.flush()
    return token


def verify_token(org: Organization, token: str | None) -> bool:
    """True if ``token`` is the organization's token (constant-time comparison)."""
    return token_matches(token, org.token_hash)


def reveal_token(org: Organization, key: bytes) -> str:
    """The stored token in plain text. Raises :class:`~sf_metadata.errors.CredentialsError`
    when ``key`` is not the key it was stored with."""
    return decrypt_token(org.token_encrypted, key)


def webhook_url(org: Organization, token: str) -> str:
    """The endpoint URL Salesforce posts to, token included (a secret: print, never log)."""
    return webhook_url_for(org.base_url, org.id, token)


def organization_json(org: Organization, key: bytes, *, details: bool = True) -> dict[str, Any]:
    """The ``org add/show --json`` object::

        {"organization": str, "salesforceOrgId": str (18), "webhookUrl": str, "enabled": bool,
         "baseUrl": str, "createdAt": ISO 8601 UTC}     # the last two when ``details``

    Raises :class:`~sf_metadata.errors.CredentialsError` if the token cannot be decrypted.
    """
    out: dict[str, Any] = {
        "organization": org.id,
        "salesforceOrgId": org.salesforce_org_id,
        "webhookUrl": webhook_url(org, reveal_token(org, key)),
        "enabled": org.enabled,
    }
    if details:
        out["baseUrl"] = org.base_url
        out["createdAt"] = org.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return out
