"""The Salesforce seam: :class:`OrgApi` (what preflight, deploy and reconcile call) and
:class:`OrgClient`, its implementation over simple-salesforce: SOQL, describe, Tooling and
the Metadata SOAP endpoint, with one re-login on an expired session where the credential
kind allows it. Tests pass their own :class:`OrgApi` (as httpx tests pass a
``MockTransport``).

Transient HTTP failures (a connection reset or refused, HTTP 502/503/504) are retried with
backoff by a urllib3 ``Retry`` mounted on the client's ``requests`` session (as CumulusCI
mounts ``HTTPAdapter(max_retries=Retry(backoff_factor=0.3))``,
``cumulusci/salesforce_api/metadata.py``): see :func:`retrying_session`. A request that is
not idempotent (a Metadata ``deploy``, an OAuth login) is retried only when it never
reached Salesforce (connection refused), never after it was sent.

simple-salesforce is used for authentication, SOQL, describe and Tooling only (reference
``metadata-simple-salesforce.md``); Metadata API envelopes are posted here with a copy of
the headers (its own deploy helpers mutate the shared ``sf.headers``, reference
``metadata-deploy-bugs.md`` #17). simple-salesforce never refreshes SOAP sessions (#20), so
an ``INVALID_SESSION_ID`` fault logs in again once and retries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from deployer.credentials import Credentials, login
from deployer.envelopes import SoapFault, parse_soap_fault
from sf_metadata.errors import AuthenticationError, SalesforceError, Setting

if TYPE_CHECKING:  # simple-salesforce is imported where a call needs it (see _sf_errors)
    from simple_salesforce.api import Salesforce
    from simple_salesforce.exceptions import SalesforceError as _SfError

__all__ = [
    "IDEMPOTENT_METADATA_CALLS",
    "OrgApi",
    "OrgClient",
    "RetryingAdapter",
    "retrying_session",
]

Login = Callable[..., "Salesforce"]

#: Metadata API calls that only read, so a retry after a reset cannot do anything twice.
IDEMPOTENT_METADATA_CALLS = frozenset(
    {"checkDeployStatus", "checkRetrieveStatus", "describeMetadata", "listMetadata", "readMetadata"}
)
#: Statuses retried: a proxy or Salesforce's edge said the instance is busy or unreachable.
RETRY_STATUSES = frozenset({502, 503, 504})
#: HTTP methods that are idempotent (RFC 9110 section 9.2.2) plus PATCH, which this client
#: only uses to set a flow's active version (setting the same value twice is harmless).
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class OrgApi(Protocol):
    """What the deployer asks of one logged-in Salesforce org (implemented by
    :class:`OrgClient`; tests pass an in-memory one).

    ``api_version`` is ``"NN.0"``. Every method raises
    :class:`~sf_metadata.errors.AuthenticationError` when the session expired and cannot be
    refreshed, and :class:`~sf_metadata.errors.SalesforceError` for other Salesforce or
    network failures.
    """

    api_version: str

    def use_version(self, api_version: str) -> None:
        """Switch the REST, Tooling and Metadata endpoints to ``api_version``."""

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Run SOQL (all pages); return the records."""

    def tooling_query(self, soql: str) -> list[dict[str, Any]]:
        """Run a Tooling API query; return the records."""

    def tooling_patch(self, path: str, data: dict[str, Any]) -> None:
        """PATCH a Tooling sobject (``sobjects/FlowDefinition/<id>``)."""

    def tooling_delete(self, path: str) -> bool:
        """DELETE a Tooling sobject; ``False`` when it was already gone (404)."""

    def describe(self, sobject: str) -> dict[str, Any]:
        """``GET sobjects/<sobject>/describe``."""

    def userinfo(self) -> dict[str, Any]:
        """The logged-in user: ``{"user_id", "preferred_username"}``."""

    def max_api_version(self) -> str:
        """The highest API version the org serves, ``"NN.0"``."""

    def metadata_call(self, action: str, render: Callable[[str], bytes]) -> bytes:
        """POST a Metadata API envelope built by ``render(session_id)``; the answer body."""


class RetryingAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that retries transient failures with exponential backoff.

    ``retry`` applies to idempotent requests (the methods above, and a Metadata API POST
    whose ``SOAPAction`` is in :data:`IDEMPOTENT_METADATA_CALLS`): connection errors, read
    errors (a reset) and HTTP 502/503/504. Any other request gets ``once``: connection
    errors only (the request never left), no read or status retries. After the last retry
    the last response is returned (``raise_on_status=False``) or the last error raised, as
    ``requests`` would without retries.
    """

    def __init__(self, *, total: int = 4, backoff_factor: float = 0.5) -> None:
        retry = Retry(
            total=total,
            backoff_factor=backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # the choice is made per request in send()
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        super().__init__(max_retries=retry)
        self._once = HTTPAdapter(
            max_retries=Retry(
                total=total,
                connect=total,
                read=0,
                status=0,
                other=0,
                backoff_factor=backoff_factor,
                raise_on_status=False,
            )
        )

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        if _idempotent(request.method or "", request.headers):
            return super().send(request, **kwargs)
        return self._once.send(request, **kwargs)

    def close(self) -> None:
        self._once.close()
        super().close()


def _idempotent(method: str, headers: Mapping[str, str | bytes]) -> bool:
    if method.upper() in _IDEMPOTENT_METHODS:
        return True
    return method.upper() == "POST" and headers.get("SOAPAction") in IDEMPOTENT_METADATA_CALLS


def retrying_session(
    session: requests.Session | None = None, *, total: int = 4, backoff_factor: float = 0.5
) -> requests.Session:
    """``session`` (a new one by default) with a :class:`RetryingAdapter` mounted for
    ``https://`` and ``http://`` (a session that already has one is returned as it is, so a
    caller can choose ``total`` and ``backoff_factor``). Backoff: ``backoff_factor * 2 ** (n - 1)`` seconds before
    the n-th retry (urllib3 2), so 0, 1, 2, 4 s with the defaults; a ``Retry-After`` header
    is honoured."""
    the_session = session if session is not None else requests.Session()
    if isinstance(the_session.get_adapter("https://"), RetryingAdapter):
        return the_session
    adapter = RetryingAdapter(total=total, backoff_factor=backoff_factor)
    the_session.mount("https://", adapter)
    the_session.mount("http://", adapter)
    return the_session


class OrgClient:
    """One logged-in org (an :class:`OrgApi`). ``api_version`` is ``"NN.0"``; change it
    with :meth:`use_version`. ``session`` (a new one by default) gets a
    :class:`RetryingAdapter` mounted; ``login_fn`` logs in (tests pass their own).

    Every method raises :class:`AuthenticationError` when the session expired and cannot be
    refreshed (or expired again after one re-login), and :class:`SalesforceError` for other
    Salesforce or network failures; the ``requests`` or simple-salesforce error is kept as
    ``__cause__``.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_version: str,
        session: requests.Session | None = None,
        login_fn: Login = login,
    ) -> None:
        self.credentials = credentials
        self._session = retrying_session(session)
        self._login = login_fn
        self._relogged = False
        self.api_version = api_version
        self.sf = login_fn(credentials, api_version=api_version, session=self._session)

    # -- session -----------------------------------------------------------------------
    @property
    def instance_host(self) -> str:
        """The instance host name (``acme.my.salesforce.com``)."""
        return str(self.sf.sf_instance)

    def use_version(self, api_version: str) -> None:
        """Switch the REST, Tooling and Metadata endpoints to ``api_version``."""
        self.api_version = api_version
        sf = self.sf
        sf.sf_version = api_version
        sf.base_url = f"https://{sf.sf_instance}/services/data/v{api_version}/"
        sf.tooling_url = f"{sf.base_url}tooling/"
        sf.metadata_url = f"https://{sf.sf_instance}/services/Soap/m/{api_version}/"

    @property
    def instance_url(self) -> str:
        """``https://`` + :attr:`instance_host`."""
        return f"https://{self.instance_host}"

    @property
    def access_token(self) -> str:
        """The current session id (a secret: never log it)."""
        return str(self.sf.session_id)

    @property
    def http(self) -> requests.Session:
        """The ``requests`` session every call goes through (the retry is mounted on it)."""
        return self._session

    def refresh_session(self) -> None:
        """Log in again now (a caller that saw ``INVALID_SESSION_ID`` itself, such as the
        REST User reader). Raises :class:`AuthenticationError` when the credential kind
        cannot log in again (an existing session)."""
        self._relogged = False
        self._expired()

    def _expired(self) -> None:
        """Log in again once, or raise :class:`AuthenticationError`."""
        if not self.credentials.refreshable:
            raise AuthenticationError(
                "the Salesforce session expired and an existing session (an access token) "
                "cannot be refreshed: a new access token is needed, or a credential that can "
                "log in again (JWT or client credentials)",
                setting=Setting.ACCESS_TOKEN,
            )
        if self._relogged:
            raise AuthenticationError(
                "the Salesforce session expired again right after logging in: check the "
                "connected app's session policies"
            )
        self.sf = self._login(self.credentials, api_version=self.api_version, session=self._session)
        # Only a login that succeeded counts: one that failed (Salesforce unreachable) is
        # tried again by the next call, which then says what failed, not "expired again".
        self._relogged = True
        self.use_version(self.api_version)

    def _call(self, fn: Callable[[], Any], what: str, *, missing_ok: bool = False) -> Any:
        """Run ``fn``; a 404 re-raises ``SalesforceResourceNotFound`` only when
        ``missing_ok``, else it becomes :class:`SalesforceError` like every other failure."""
        from simple_salesforce.exceptions import (  # loaded by the login that made self.sf
            SalesforceError as _SfError,
        )
        from simple_salesforce.exceptions import (
            SalesforceExpiredSession,
            SalesforceMalformedRequest,
            SalesforceResourceNotFound,
        )

        for _ in range(2):
            try:
                return fn()
            except SalesforceExpiredSession:
                self._expired()
            except SalesforceResourceNotFound as exc:
                if missing_ok:
                    raise
                raise SalesforceError(f"Salesforce found no {what}: {_rest_error(exc)}") from exc
            except SalesforceMalformedRequest as exc:
                raise SalesforceError(f"Salesforce refused {what}: {_rest_error(exc)}") from exc
            except _SfError as exc:
                raise SalesforceError(
                    f"Salesforce answered HTTP {exc.status} to {what}: {_rest_error(exc)}"
                ) from exc
            except requests.RequestException as exc:
                raise SalesforceError(
                    f"cannot reach Salesforce for {what} ({type(exc).__name__})"
                ) from exc
        raise AuthenticationError(f"the Salesforce session expired during {what}")

    # -- REST ----------------------------------------------------------------------------
    def query(self, soql: str) -> list[dict[str, Any]]:
        """Run SOQL (all pages); return the records."""
        result = self._call(lambda: self.sf.query_all(soql), "a SOQL query")
        return [dict(r) for r in result.get("records", [])]

    def tooling_query(self, soql: str) -> list[dict[str, Any]]:
        """Run a Tooling API query; return the records."""
        result = self._call(
            lambda: self.sf.toolingexecute("query/?q=" + quote(soql, safe="")),
            "a Tooling API query",
        )
        return [dict(r) for r in result.get("records", [])]

    def tooling_patch(self, path: str, data: dict[str, Any]) -> None:
        """PATCH a Tooling sobject (``sobjects/FlowDefinition/<id>``)."""
        self._call(lambda: self.sf.toolingexecute(path, method="PATCH", data=data), path)

    def tooling_delete(self, path: str) -> bool:
        """DELETE a Tooling sobject; ``False`` when it was already gone (404)."""
        from simple_salesforce.exceptions import SalesforceResourceNotFound

        try:
            self._call(lambda: self.sf.toolingexecute(path, method="DELETE"), path, missing_ok=True)
        except SalesforceResourceNotFound:
            return False
        return True

    def describe(self, sobject: str) -> dict[str, Any]:
        """``GET sobjects/<sobject>/describe``."""
        return dict(self._call(lambda: getattr(self.sf, sobject).describe(), f"describe {sobject}"))

    def userinfo(self) -> dict[str, Any]:
        """The logged-in user: ``{"user_id", "preferred_username"}`` from
        ``GET /services/oauth2/userinfo``; a token without the ``openid``/``id`` scope may be
        refused there, so ``GET chatter/users/me`` is asked next (``id``, ``username``)."""
        try:
            return dict(self._call(lambda: self.sf.oauth2("userinfo") or {}, "userinfo"))
        except SalesforceError as first:
            try:
                me = self._call(lambda: self.sf.restful("chatter/users/me"), "chatter/users/me")
            except SalesforceError as second:
                raise SalesforceError(str(first)) from second
            me = me or {}
            return {"user_id": me.get("id"), "preferred_username": me.get("username")}

    def max_api_version(self) -> str:
        """The highest API version the org serves (``GET /services/data/``)."""

        from simple_salesforce.exceptions import SalesforceError as _SfError
        from simple_salesforce.exceptions import SalesforceExpiredSession

        def fetch() -> Any:
            url = f"https://{self.sf.sf_instance}/services/data/"
            response = self.sf.session.get(url, headers=dict(self.sf.headers))
            if response.status_code == 401:
                raise SalesforceExpiredSession(url, 401, "versions", response.content)
            if response.status_code >= 300:
                raise _SfError(url, response.status_code, "versions", response.content)
            return response.json()

        versions = self._call(fetch, "the list of API versions")
        numbers = [float(v["version"]) for v in versions if "version" in v]
        if not numbers:
            raise SalesforceError("Salesforce listed no API versions")
        return f"{max(numbers):.1f}"

    # -- Metadata SOAP -------------------------------------------------------------------
    def metadata_call(self, action: str, render: Callable[[str], bytes]) -> bytes:
        """POST a Metadata API envelope; ``render(session_id)`` builds it.

        Returns the answer body. A SOAP fault raises :class:`SalesforceError` with its code
        and message (``INVALID_SESSION_ID``: log in again once, then
        :class:`AuthenticationError`).
        """
        for _ in range(2):
            url = f"https://{self.sf.sf_instance}/services/Soap/m/{self.api_version}"
            headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": action}
            try:
                response = self.sf.session.post(
                    url, data=render(str(self.sf.session_id)), headers=headers
                )
            except requests.RequestException as exc:
                raise SalesforceError(
                    f"cannot reach the Metadata API for {action} ({type(exc).__name__})"
                ) from exc
            if response.status_code < 300:
                return bytes(response.content)
            fault = parse_soap_fault(response.content)
            if fault is not None and fault.expired_session:
                self._expired()
                continue
            raise SalesforceError(_fault_text(action, response.status_code, fault))
        raise AuthenticationError(f"the Salesforce session expired during {action}")


def _fault_text(action: str, status: int, fault: SoapFault | None) -> str:
    if fault is None:
        return f"the Metadata API answered HTTP {status} to {action}"
    return f"the Metadata API refused {action}: {fault.code}: {fault.message}"


def _rest_error(exc: _SfError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return f"{first.get('errorCode', '')}: {first.get('message', '')}"[:300]
    return str(content)[:300]
