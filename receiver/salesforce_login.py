"""One credential resolution for check, deploy, undeploy, reconcile and the dashboard, and
the OAuth token calls behind a stored connection.

:func:`salesforce_client` returns a logged-in client from the first complete credential set
of CONTRACT section 4: flags, then the environment (``deployer.credentials``), then the
connection stored for the organization (``receiver/salesforce_connection.py``). A stored
``oauth`` connection uses its stored access token and, when Salesforce says it expired,
refreshes it (``POST {login_url}/services/oauth2/token``, ``grant_type=refresh_token``):
the row is locked (``SELECT ... FOR UPDATE``; SQLite's writer lock), so one refresh runs per
organization at a time, and the rotated refresh token Salesforce returns is saved in the
same transaction that used the old one (reusing a rotated refresh token revokes every
token of the app, reference ``salesforce-facts-2026.md`` item 3). A refused refresh
(``invalid_grant``: revoked, or expired after 30 idle days) marks the connection
"reconnect" with Salesforce's reason.

Tokens are never logged or put in an error message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import requests
from sqlalchemy.engine import Engine

from deployer.client import OrgClient
from deployer.credentials import Credentials, login, resolve_credentials
from deployer.package import PINNED_API_VERSION, validate_api_version
from receiver._logging import LOGGER_NAME
from receiver.db import transaction
from receiver.salesforce_connection import (
    SalesforceConnection,
    mark_reconnect,
    mark_used,
    read_secrets,
    write_secrets,
)
from receiver.salesforce_hosts import accepted_instance_url
from sf_metadata.errors import (
    AuthenticationError,
    CredentialsError,
    SalesforceError,
    Setting,
    UsageError,
)

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce

__all__ = [
    "OAUTH_TIMEOUT_S",
    "ResolvedClient",
    "refresh_stored_token",
    "revoke_token",
    "salesforce_client",
    "stored_credentials",
    "token_request",
]

#: Seconds to wait for Salesforce's OAuth endpoints.
OAUTH_TIMEOUT_S = 30.0

log = logging.getLogger(LOGGER_NAME)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ResolvedClient:
    """A logged-in client and where its credentials came from (``flags``: flags or the
    environment; ``stored``: the organization's stored connection)."""

    client: OrgClient
    source: Literal["flags", "stored"]
    kind: str
    warnings: tuple[str, ...] = ()


def token_request(
    http: requests.Session, login_url: str, form: dict[str, str], *, what: str
) -> dict[str, Any]:
    """POST ``form`` to ``{login_url}/services/oauth2/token``; the JSON answer.

    Raises :class:`AuthenticationError` with Salesforce's ``error``/``error_description``
    for a 400/401 (``invalid_grant``...), :class:`SalesforceError` when it cannot be
    reached or answers otherwise. Neither message holds the form's values.
    """
    url = login_url.rstrip("/") + "/services/oauth2/token"
    try:
        response = http.post(url, data=form, timeout=OAUTH_TIMEOUT_S)
    except requests.RequestException as exc:
        raise SalesforceError(
            f"cannot reach Salesforce at {login_url} for {what} ({type(exc).__name__})"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code in (400, 401):
        error = str(body.get("error") or "refused")
        description = str(body.get("error_description") or "")
        raise AuthenticationError(
            f"Salesforce refused {what}: {error}"
            + (f" ({description[:200]})" if description else "")
        )
    if response.status_code >= 300 or not isinstance(body, dict):
        raise SalesforceError(f"Salesforce answered HTTP {response.status_code} to {what}")
    return body


def revoke_token(http: requests.Session, login_url: str, token: str) -> bool:
    """Revoke an OAuth access or refresh token (``POST /services/oauth2/revoke``);
    ``False`` when Salesforce could not be reached or refused (already invalid)."""
    url = login_url.rstrip("/") + "/services/oauth2/revoke"
    try:
        response = http.post(url, data={"token": token}, timeout=OAUTH_TIMEOUT_S)
    except requests.RequestException:
        return False
    return response.status_code < 300


def _kept_instance_url(answered: object, stored: str) -> str:
    """The instance URL after a refresh: the one Salesforce answered when it is a
    Salesforce host (``receiver.salesforce_hosts``), else the stored one, which was
    accepted when the connection was made (a token never goes to a host nobody accepted)."""
    if not answered or str(answered).rstrip("/") == stored.rstrip("/"):
        return stored
    try:
        return accepted_instance_url(str(answered))
    except UsageError:
        log.warning(
            "the token refresh named an instance URL that is not a Salesforce host; keeping %s",
            stored,
        )
        return stored


def refresh_stored_token(
    engine: Engine,
    key: bytes,
    organization: str,
    *,
    stale_access_token: str | None,
    client_id: str | None,
    client_secret: str | None,
    http: requests.Session,
    clock: Clock = _utc_now,
) -> tuple[str, str]:
    """Refresh the stored ``oauth`` connection's access token; ``(access token,
    instance URL)``.

    Locks the row first; when another worker refreshed meanwhile (the stored access token
    is no longer ``stale_access_token``) its token is used and nothing is sent. A rotated
    refresh token is saved in the same transaction. Raises :class:`AuthenticationError`
    (and marks the connection "reconnect") when Salesforce refuses the refresh token,
    :class:`SalesforceError` when it cannot be reached.
    """
    refused: AuthenticationError | None = None
    with transaction(engine) as session:
        row = session.get(SalesforceConnection, organization, with_for_update=True)
        if row is None:
            raise CredentialsError(f"{organization} has no stored Salesforce connection")
        secrets = read_secrets(row, key)
        current = secrets.get("access_token")
        if stale_access_token is not None and current and current != stale_access_token:
            return current, row.instance_url
        refresh = secrets.get("refresh_token")
        if not refresh:
            raise AuthenticationError(
                "the stored Salesforce session expired and holds no refresh token: connect "
                "to Salesforce again"
            )
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": client_id or secrets.get("client_id") or "",
        }
        if client_secret:
            form["client_secret"] = client_secret
        try:
            answer = token_request(
                http, row.login_url or row.instance_url, form, what="the stored refresh token"
            )
        except AuthenticationError as error:
            refused = error
            mark_reconnect(session, organization, error.message)
        else:
            access = str(answer["access_token"])
            secrets["access_token"] = access
            if answer.get("refresh_token"):
                secrets["refresh_token"] = str(answer["refresh_token"])
            row.instance_url = _kept_instance_url(answer.get("instance_url"), row.instance_url)
            row.secrets_encrypted = write_secrets(dict(secrets), key)
            row.refreshed_at = row.last_used_at = clock()
            session.add(row)
            return access, row.instance_url
    assert refused is not None
    raise AuthenticationError(
        f"{refused.message}: the refresh token was revoked or expired; reconnect to "
        "Salesforce (CRM page, or `agent-provision org connect`)"
    )


class _StoredOAuthLogin:
    """``login_fn`` for :class:`OrgClient`: the first call uses the stored access token,
    each later one (the session expired) refreshes it."""

    def __init__(
        self,
        engine: Engine,
        key: bytes,
        organization: str,
        *,
        client_id: str | None,
        client_secret: str | None,
        http: requests.Session,
        clock: Clock,
    ) -> None:
        self.engine, self.key, self.organization = engine, key, organization
        self.client_id, self.client_secret = client_id, client_secret
        self.http, self.clock = http, clock
        self.calls = 0

    def __call__(
        self, credentials: Credentials, *, api_version: str, session: requests.Session | None
    ) -> Salesforce:
        self.calls += 1
        if self.calls == 1:
            return login(credentials, api_version=api_version, session=session or self.http)
        access, instance = refresh_stored_token(
            self.engine,
            self.key,
            self.organization,
            stale_access_token=credentials.access_token,
            client_id=self.client_id,
            client_secret=self.client_secret,
            http=self.http,
            clock=self.clock,
        )
        fresh = Credentials(kind="oauth", instance_url=instance, access_token=access)
        return login(fresh, api_version=api_version, session=session or self.http)


def stored_credentials(row: SalesforceConnection, key: bytes) -> Credentials:
    """The :class:`Credentials` of a stored connection."""
    s = read_secrets(row, key)
    if row.kind in ("session", "oauth"):
        return Credentials(
            kind="session" if row.kind == "session" else "oauth",
            instance_url=row.instance_url,
            access_token=s.get("access_token"),
        )
    if row.kind == "jwt":
        return Credentials(
            kind="jwt",
            username=s.get("username"),
            consumer_key=s.get("consumer_key"),
            private_key=s.get("private_key"),
            domain=s.get("domain") or "login",
        )
    if row.kind == "client-credentials":
        return Credentials(
            kind="client-credentials",
            consumer_key=s.get("consumer_key"),
            consumer_secret=s.get("consumer_secret"),
            domain=s.get("domain") or "login",
        )
    return Credentials(
        kind="soap-login",
        username=s.get("username"),
        password=s.get("password"),
        security_token=s.get("security_token"),
        domain=s.get("domain") or "login",
    )


def salesforce_client(
    engine: Engine,
    key: bytes,
    organization: str,
    options: Mapping[str, str | None],
    environ: Mapping[str, str],
    *,
    api_version: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    http: requests.Session | None = None,
    clock: Clock = _utc_now,
) -> ResolvedClient:
    """A logged-in client for ``organization`` (see the module docstring for the order).

    ``options`` are the credential flags (``deployer.credentials.CREDENTIAL_OPTIONS``
    keys), ``environ`` the environment (the dashboard passes neither: stored connection
    only). ``client_id``/``client_secret`` are the External Client App's (to refresh an
    ``oauth`` connection). Raises :class:`CredentialsError` when no set is complete and no
    connection is stored, :class:`AuthenticationError` when Salesforce refuses the login
    (a stored connection is then marked "reconnect"), :class:`SalesforceError` when it
    cannot be reached.
    """
    version = validate_api_version(api_version) if api_version else PINNED_API_VERSION
    http = http or requests.Session()
    try:
        credentials = resolve_credentials(options, environ)
    except CredentialsError as error:
        missing = error
    else:
        return ResolvedClient(
            OrgClient(credentials, api_version=version, session=http), "flags", credentials.kind
        )
    with transaction(engine, read_only=True) as session:
        row = session.get(SalesforceConnection, organization)
        stored = stored_credentials(row, key) if row is not None else None
    given = any(options.get(k) for k in options) or any(environ.get(k) for k in _ENV_NAMES)
    if stored is None and not given:
        # nothing was given for this run: the stored connection is what is missing
        problem = (
            f"{organization} has no stored Salesforce connection: store one with "
            f"`agent-provision org connect {organization}` or Connect to Salesforce on the CRM "
            "page (shown when AGENT_PROVISION_SALESFORCE_CLIENT_ID names the External Client "
            "App), or give credentials for this run"
        )
        raise CredentialsError(problem, problems=(problem,), setting=Setting.CREDENTIALS)
    if stored is None:
        raise CredentialsError(
            missing.message,
            missing=missing.missing,
            problems=(
                *missing.problems,
                f"{organization} has no stored Salesforce connection: store one with "
                f"`agent-provision org connect {organization}` or Connect to Salesforce on "
                "the CRM page",
            ),
        )
    warnings: tuple[str, ...] = ()
    if given:
        warnings = (f"{missing.message}; using the stored Salesforce connection instead",)
    login_fn: Any = login
    if stored.kind == "oauth":
        login_fn = _StoredOAuthLogin(
            engine,
            key,
            organization,
            client_id=client_id,
            client_secret=client_secret,
            http=http,
            clock=clock,
        )
    try:
        client = OrgClient(stored, api_version=version, session=http, login_fn=login_fn)
    except AuthenticationError as error:
        with transaction(engine) as session:
            mark_reconnect(session, organization, error.message)
        raise AuthenticationError(
            f"{error.message}; the stored connection needs to be connected again",
        ) from None
    with transaction(engine) as session:
        mark_used(session, organization, clock())
    return ResolvedClient(client, "stored", stored.kind, warnings)


def _env_names() -> tuple[str, ...]:
    from deployer.credentials import CREDENTIAL_OPTIONS

    return tuple(CREDENTIAL_OPTIONS.values())


_ENV_NAMES = _env_names()
