"""The four Salesforce credential kinds of CONTRACT section 4, and logging in with them.

The first complete set, in this order, is used (each value from its flag, else from the
environment variable named beside it):

1. ``session``: ``--instance-url``/``SF_INSTANCE_URL`` + ``--access-token``/``SF_ACCESS_TOKEN``;
   an existing session, which cannot be refreshed (an expired one is a clear error);
2. ``jwt``: ``--username``/``SF_USERNAME`` + ``--consumer-key``/``SF_CONSUMER_KEY`` +
   ``--private-key-file``/``SF_PRIVATE_KEY_FILE``; ``--domain``/``SF_DOMAIN`` ``login``
   (default) or ``test``;
3. ``client-credentials``: ``--consumer-key`` + ``--consumer-secret``/``SF_CONSUMER_SECRET`` +
   ``--domain`` set to the org's My Domain (``acme.my``, ``acme--uat.sandbox.my``);
4. ``soap-login``: ``--username`` + ``--password``/``SF_PASSWORD`` +
   ``--security-token``/``SF_SECURITY_TOKEN``; Salesforce's SOAP ``login()`` is unavailable
   from API 65.0
   (https://developer.salesforce.com/docs/platform/api/guide/sforce-api-calls-login.html).

Login goes through simple-salesforce's ``Salesforce`` constructor (reference
``metadata-simple-salesforce.md`` section 1). Secrets are held so that ``repr`` never shows
them and are never logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import requests

from sf_metadata.errors import (
    AuthenticationError,
    CredentialsError,
    SalesforceError,
    SalesforceUnreadable,
    Setting,
)

if TYPE_CHECKING:  # simple-salesforce (and zeep under it) is imported at the first login
    from simple_salesforce.api import Salesforce
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed

__all__ = [
    "CREDENTIAL_OPTIONS",
    "SOAP_LOGIN_MAX_API_VERSION",
    "CredentialKind",
    "Credentials",
    "login",
    "resolve_credentials",
]

#: ``oauth`` is only ever a stored connection (the dashboard's OAuth web server flow):
#: an access token that the store refreshes (``receiver/salesforce_login.py``).
CredentialKind = Literal["session", "jwt", "client-credentials", "soap-login", "oauth"]

#: SOAP login() is unavailable in API 65.0 and later.
SOAP_LOGIN_MAX_API_VERSION = 64.0

#: option name (as the CLI passes it) -> environment variable.
CREDENTIAL_OPTIONS: dict[str, str] = {
    "instance_url": "SF_INSTANCE_URL",
    "access_token": "SF_ACCESS_TOKEN",
    "username": "SF_USERNAME",
    "consumer_key": "SF_CONSUMER_KEY",
    "private_key_file": "SF_PRIVATE_KEY_FILE",
    "consumer_secret": "SF_CONSUMER_SECRET",
    "domain": "SF_DOMAIN",
    "password": "SF_PASSWORD",
    "security_token": "SF_SECURITY_TOKEN",
}


@dataclass(frozen=True)
class Credentials:
    """One complete credential set. ``repr`` shows the kind and non-secret names only."""

    kind: CredentialKind
    instance_url: str | None = None
    username: str | None = None
    consumer_key: str | None = field(default=None, repr=False)
    private_key_file: str | None = None
    #: the PEM private key itself (a stored JWT connection), used instead of the file
    private_key: str | None = field(default=None, repr=False)
    domain: str = "login"
    access_token: str | None = field(default=None, repr=False)
    consumer_secret: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)

    @property
    def refreshable(self) -> bool:
        """Whether an expired session can be replaced by logging in again."""
        return self.kind != "session"

    def describe(self) -> str:
        """A one-line, secret-free description (for messages)."""
        who = self.username or self.instance_url or self.domain
        return f"{self.kind} credentials ({who})"


def _pick(options: Mapping[str, str | None], environ: Mapping[str, str], name: str) -> str | None:
    value = options.get(name)
    if value is None or value == "":
        value = environ.get(CREDENTIAL_OPTIONS[name]) or None
    return value


def resolve_credentials(
    options: Mapping[str, str | None], environ: Mapping[str, str]
) -> Credentials:
    """Pick the first complete credential set (CONTRACT section 4 order).

    ``options`` maps the keys of :data:`CREDENTIAL_OPTIONS` to flag values (``None`` when
    absent); ``environ`` is the process environment. Raises :class:`CredentialsError` when
    no set is complete, naming what each kind needs, or when a private key file is
    unreadable.
    """
    v = {name: _pick(options, environ, name) for name in CREDENTIAL_OPTIONS}
    if v["instance_url"] and v["access_token"]:
        if not v["instance_url"].startswith("https://"):
            raise CredentialsError(
                "the instance URL must be an https:// URL such as https://acme.my.salesforce.com",
                setting=Setting.INSTANCE_URL,
            )
        return Credentials(
            kind="session", instance_url=v["instance_url"], access_token=v["access_token"]
        )
    if v["username"] and v["consumer_key"] and v["private_key_file"]:
        key_path = Path(v["private_key_file"])
        if not key_path.is_file():
            raise CredentialsError(
                f"cannot read the private key file {key_path}: give the PEM private key of "
                "the connected app's certificate",
                setting=Setting.PRIVATE_KEY_FILE,
            )
        domain = v["domain"] or "login"
        return Credentials(
            kind="jwt",
            username=v["username"],
            consumer_key=v["consumer_key"],
            private_key_file=str(key_path),
            domain=domain,
        )
    if v["consumer_key"] and v["consumer_secret"]:
        my_domain = v["domain"]
        if not my_domain or my_domain in ("login", "test"):
            raise CredentialsError(
                "client credentials need the org's My Domain as login domain, such as "
                "acme.my or acme--uat.sandbox.my (not login or test)",
                setting=Setting.LOGIN_DOMAIN,
            )
        return Credentials(
            kind="client-credentials",
            consumer_key=v["consumer_key"],
            consumer_secret=v["consumer_secret"],
            domain=my_domain,
        )
    if v["username"] and v["password"] and v["security_token"]:
        return Credentials(
            kind="soap-login",
            username=v["username"],
            password=v["password"],
            security_token=v["security_token"],
            domain=v["domain"] or "login",
        )
    partial = _nearest_partial_set(v)
    if partial is not None:
        line, missing = partial
        raise CredentialsError(line, missing=missing)
    raise CredentialsError(
        "no complete Salesforce credentials: "
        + ", or ".join(f"{label} ({_words(names)})" for label, names in _SETS),
        setting=Setting.CREDENTIALS,
    )


#: Each credential kind (CONTRACT section 4 order): its name and its pieces.
_SETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("an existing session", ("instance_url", "access_token")),
    ("JWT bearer", ("username", "consumer_key", "private_key_file")),
    ("client credentials", ("consumer_key", "consumer_secret")),
    ("SOAP login", ("username", "password", "security_token")),
)


#: Each credential piece in words (messages name the problem, each surface its controls).
PIECES: dict[str, str] = {
    "instance_url": "instance URL",
    "access_token": "access token",
    "username": "username",
    "consumer_key": "consumer key",
    "private_key_file": "private key file",
    "consumer_secret": "consumer secret",
    "domain": "login domain",
    "password": "password",
    "security_token": "security token",
}


def _words(names: Iterable[str]) -> str:
    """``"the username, the consumer key and the private key file"`` style."""
    words = [f"the {PIECES[n]}" for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _nearest_partial_set(v: Mapping[str, str | None]) -> tuple[str, list[str]] | None:
    """One line naming what the nearest incomplete set lacks, and those pieces, or
    ``None`` when no piece was given. Nearest: the largest share of its pieces given, then
    the first in order."""
    best: tuple[tuple[float, int], str, list[str]] | None = None
    for order, (label, names) in enumerate(_SETS):
        given = [n for n in names if v.get(n)]
        if not given:
            continue
        score = (len(given) / len(names), -order)
        if best is None or score > best[0]:
            best = (score, label, [n for n in names if not v.get(n)])
    if best is None:
        return None
    _, label, missing = best
    return (
        f"{label} also needs {_words(missing)} (or another complete set of credentials)",
        missing,
    )


def login(
    credentials: Credentials,
    *,
    api_version: str,
    session: requests.Session | None = None,
) -> Salesforce:
    """Log in with ``credentials`` at ``api_version`` (``"NN.0"``) through simple-salesforce.

    A ``session`` credential makes no request. Raises :class:`CredentialsError` for SOAP
    login at API 65.0 or later, :class:`AuthenticationError` when Salesforce refuses the
    login, :class:`SalesforceError` when it cannot be reached.
    """
    if credentials.kind == "soap-login" and float(api_version) > SOAP_LOGIN_MAX_API_VERSION:
        raise CredentialsError(
            f"SOAP login (username, password and security token) is unavailable from "
            f"API 65.0; API {api_version} was asked: use JWT or client credentials"
        )
    # imported here, not with the module: simple-salesforce and zeep cost a process that
    # never logs in (the receiver serving webhooks, a read-only CLI command) about 0.2 s
    from simple_salesforce.api import Salesforce
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed
    from simple_salesforce.exceptions import SalesforceError as _SfError

    try:
        return Salesforce(**_login_arguments(credentials), version=api_version, session=session)
    except SalesforceAuthenticationFailed as exc:
        raise AuthenticationError(
            f"Salesforce refused the login with {credentials.describe()}: "
            f"{_auth_reason(exc)}; check the credentials and the connected app"
        ) from exc
    except _SfError as exc:
        raise SalesforceError(f"Salesforce login failed with HTTP {exc.status}") from exc
    except requests.RequestException as exc:
        raise SalesforceUnreadable(
            f"Salesforce cannot be reached to log in ({type(exc).__name__}): check the "
            "network and the login domain; nothing was changed",
            setting=Setting.LOGIN_DOMAIN,
        ) from exc


def _login_arguments(credentials: Credentials) -> dict[str, Any]:
    """simple-salesforce ``Salesforce(...)`` keyword arguments for each credential kind
    (``simple_salesforce/api.py``: session id + instance, JWT bearer, client credentials,
    SOAP username-password login)."""
    c = credentials
    if c.kind in ("session", "oauth"):
        return {"instance_url": c.instance_url, "session_id": c.access_token}
    if c.kind == "jwt":
        key: dict[str, Any] = (
            {"privatekey": c.private_key}
            if c.private_key
            else {"privatekey_file": c.private_key_file}
        )
        return {
            "username": c.username,
            "consumer_key": c.consumer_key,
            **key,
            "domain": c.domain,
        }
    if c.kind == "client-credentials":
        return {
            "consumer_key": c.consumer_key,
            "consumer_secret": c.consumer_secret,
            "domain": c.domain,
        }
    return {
        "username": c.username,
        "password": c.password,
        "security_token": c.security_token,
        "domain": c.domain,
    }


def _auth_reason(exc: SalesforceAuthenticationFailed) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    text = " ".join(str(p) for p in (code, message) if p)
    return text[:200] or "authentication failed"
