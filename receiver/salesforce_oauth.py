"""Connect to Salesforce: the OAuth 2.0 web server flow with PKCE (S256), CONTRACT section 7.

1. :func:`begin` checks the login URL (:func:`accepted_login_url`), stores a pending sign-in
   (table ``oauth_state``: the SHA-256 of a random ``state``, the organization, the login
   URL, the Fernet-encrypted PKCE ``code_verifier``) and returns the authorize URL
   (``{login_url}/services/oauth2/authorize?response_type=code&client_id&redirect_uri&state&
   code_challenge&code_challenge_method=S256&scope=api id refresh_token``, RFC 7636 and
   Salesforce Help "OAuth 2.0 Web Server Flow for Web App Integration").
2. :func:`complete` takes the callback's query: the ``state`` is the CSRF token of the
   callback and is used once (consumed in the transaction that finds it; unknown, replayed
   or older than :data:`STATE_TTL` is refused); a refused consent (``error=access_denied``)
   stores nothing; the code is exchanged with the verifier; the identity URL the token
   answer names gives the org and the user; a token for an org other than the registered
   one is revoked and nothing is stored. Success stores an ``oauth`` connection.

Every refusal raises :class:`OAuthRefused` with a message for the page (role ``alert``).
Tokens, codes and verifiers are never logged or put in a message.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from receiver.db import transaction
from receiver.models import UTCDateTime, organization_column
from receiver.organizations import get_organization
from receiver.salesforce_connection import ConnectionInfo, connection_info, save_connection
from receiver.salesforce_hosts import accepted_instance_url, accepted_login_url
from receiver.salesforce_login import OAUTH_TIMEOUT_S, revoke_token, token_request
from sf_metadata.errors import AgentProvisionError, SalesforceError, UsageError
from sf_metadata.ids import same_org_id, to_18

__all__ = [
    "CALLBACK_PATH",
    "ENVIRONMENTS",
    "SCOPES",
    "STATE_TTL",
    "OAuthRefused",
    "OAuthState",
    "accepted_login_url",
    "begin",
    "code_challenge",
    "complete",
    "login_url_for",
]

CALLBACK_PATH = "/oauth/salesforce/callback"
SCOPES = "api id refresh_token"
#: A pending sign-in is accepted this long.
STATE_TTL = timedelta(minutes=10)
#: The ``Environment`` field's choices and their login URLs (``My Domain``: typed).
ENVIRONMENTS = {
    "production": "https://login.salesforce.com",
    "sandbox": "https://test.salesforce.com",
    "my-domain": "",
}


class OAuthRefused(AgentProvisionError):
    """The sign-in cannot complete; the message says why and what to do (shown in a page
    with role ``alert``). Nothing was stored."""


class OAuthState(SQLModel, table=True):
    """A pending Connect to Salesforce (see the module docstring)."""

    __tablename__ = "oauth_state"

    state_hash: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(sa_column=organization_column())
    login_url: str = Field(max_length=2000)
    verifier_encrypted: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    operator: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    consumed_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )


def login_url_for(environment: str, my_domain_url: str, extra: str = "") -> str:
    """The login URL for the ``Environment`` field (``production``, ``sandbox`` or
    ``my-domain`` with its typed URL; ``acme.my.salesforce.com`` gets ``https://``)."""
    if environment not in ENVIRONMENTS:
        raise UsageError("choose an Environment: Production, Sandbox or My Domain")
    url = ENVIRONMENTS[environment]
    if environment == "my-domain":
        url = my_domain_url.strip()
        if not url:
            raise UsageError("My Domain needs its URL, such as https://acme.my.salesforce.com")
        if "://" not in url:
            url = "https://" + url
    return accepted_login_url(url, extra)


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256: ``BASE64URL(SHA256(verifier))`` without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def begin(
    engine: Engine,
    key: bytes,
    *,
    organization: str,
    login_url: str,
    client_id: str,
    redirect_uri: str,
    operator: str | None,
    now: datetime,
) -> str:
    """Store a pending sign-in; return the authorize URL to redirect the browser to."""
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters, RFC 7636 allows 43-128
    with transaction(engine) as session:
        get_organization(session, organization)
        session.add(
            OAuthState(
                state_hash=_hash(state),
                organization_id=organization,
                login_url=login_url,
                verifier_encrypted=Fernet(key).encrypt(verifier.encode()).decode("ascii"),
                operator=operator,
                created_at=now,
            )
        )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
            "scope": SCOPES,
        }
    )
    return f"{login_url}/services/oauth2/authorize?{query}"


@dataclass(frozen=True)
class _Pending:
    organization: str
    login_url: str
    verifier: str
    operator: str | None


def _consume(engine: Engine, key: bytes, state: str, now: datetime) -> _Pending:
    if not state:
        raise OAuthRefused(
            "This sign-in has no state: start again with Connect to Salesforce on the CRM page"
        )
    with transaction(engine) as session:
        row = session.get(OAuthState, _hash(state), with_for_update=True)
        if row is None:
            raise OAuthRefused(
                "This sign-in is unknown (its state matches no Connect to Salesforce started "
                "here): start again from the CRM page"
            )
        if row.consumed_at is not None:
            raise OAuthRefused(
                "This sign-in was already used (a replayed state): start again with Connect "
                "to Salesforce on the CRM page"
            )
        row.consumed_at = now
        session.add(row)
        expired = row.created_at + STATE_TTL < now
        pending = _Pending(
            row.organization_id,
            row.login_url,
            Fernet(key).decrypt(row.verifier_encrypted.encode("ascii")).decode(),
            row.operator,
        )
    if expired:
        raise OAuthRefused(
            "This sign-in took longer than 10 minutes: start again with Connect to Salesforce"
        )
    return pending


def _identity(http: requests.Session, id_url: str, access_token: str, extra: str) -> dict[str, str]:
    accepted_login_url(id_url, extra)  # only ever sent to an accepted Salesforce origin
    try:
        response = http.get(
            id_url, headers={"Authorization": f"Bearer {access_token}"}, timeout=OAUTH_TIMEOUT_S
        )
    except requests.RequestException as exc:
        raise SalesforceError(
            f"cannot reach Salesforce's identity URL ({type(exc).__name__})"
        ) from None
    if response.status_code >= 300:
        raise SalesforceError(f"Salesforce's identity URL answered HTTP {response.status_code}")
    data = response.json()
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def complete(
    engine: Engine,
    key: bytes,
    *,
    params: dict[str, str],
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    extra_login_urls: str,
    http: requests.Session,
    now: datetime,
) -> ConnectionInfo:
    """Finish the sign-in from the callback's query ``params`` (see the module docstring);
    return the stored connection. Raises :class:`OAuthRefused`."""
    pending = _consume(engine, key, params.get("state", ""), now)
    if params.get("error"):
        reason = params.get("error_description") or params["error"]
        raise OAuthRefused(
            f"Salesforce did not connect: {params['error'][:60]} ({reason[:200]}). "
            "Nothing was stored; press Connect to Salesforce to try again and allow access"
        )
    code = params.get("code")
    if not code:
        raise OAuthRefused("Salesforce sent no authorization code: start again")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": pending.verifier,
    }
    if client_secret:
        form["client_secret"] = client_secret
    try:
        answer = token_request(http, pending.login_url, form, what="the authorization code")
    except SalesforceError as error:
        raise OAuthRefused(
            f"{error.message}. Nothing was stored: press Connect to Salesforce to try again"
        ) from None
    access = str(answer.get("access_token") or "")
    refresh = answer.get("refresh_token")
    try:
        identity = _identity(http, str(answer.get("id") or ""), access, extra_login_urls)
    except AgentProvisionError as error:
        revoke_token(http, pending.login_url, str(refresh or access))
        raise OAuthRefused(f"{error.message}. Nothing was stored") from None
    org_id = identity.get("organization_id", "")
    with transaction(engine) as session:
        registered = get_organization(session, pending.organization).salesforce_org_id
    if not org_id or not same_org_id(org_id, registered):
        revoke_token(http, pending.login_url, str(refresh or access))
        raise OAuthRefused(
            f"You signed in to the Salesforce org {to_18(org_id) if len(org_id) >= 15 else org_id or 'unknown'}, "
            f"not {to_18(registered)}, the org registered for {pending.organization}. Nothing "
            "was stored and the token was revoked: sign in to the registered org"
        )
    if not refresh:
        revoke_token(http, pending.login_url, access)
        raise OAuthRefused(
            "Salesforce gave no refresh token: add the refresh_token scope (Perform requests "
            "at any time) to the External Client App, then connect again. Nothing was stored"
        )
    try:
        instance_url = accepted_instance_url(
            str(answer.get("instance_url") or pending.login_url), extra_login_urls
        )
    except UsageError as error:
        revoke_token(http, pending.login_url, str(refresh))
        raise OAuthRefused(
            f"{error.message}. Nothing was stored and the token was revoked: connect again, "
            "and tell Salesforce support if it happens twice"
        ) from None
    host = (urlsplit(instance_url).hostname or "").lower()
    with transaction(engine) as session:
        save_connection(
            session,
            organization=pending.organization,
            kind="oauth",
            instance_url=instance_url,
            salesforce_org_id=to_18(org_id),
            is_sandbox=".sandbox." in host or pending.login_url == ENVIRONMENTS["sandbox"],
            username=identity.get("username"),
            user_id=identity.get("user_id"),
            login_url=pending.login_url,
            secrets={"access_token": access, "refresh_token": str(refresh), "client_id": client_id},
            key=key,
            now=now,
        )
        info = connection_info(session, pending.organization)
    assert info is not None
    return info
