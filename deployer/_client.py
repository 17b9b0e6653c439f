"""A small seam over simple-salesforce: SOQL, describe, Tooling and the Metadata SOAP
endpoint, with one re-login on an expired session where the credential kind allows it.

simple-salesforce is used for authentication, SOQL, describe and Tooling only (reference
``metadata-simple-salesforce.md``); Metadata API envelopes are posted here with a copy of
the headers (its own deploy helpers mutate the shared ``sf.headers``, reference
``metadata-deploy-bugs.md`` #17). simple-salesforce never refreshes SOAP sessions (#20), so
an ``INVALID_SESSION_ID`` fault logs in again once and retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError as _SfError,
)
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from deployer.credentials import Credentials, login
from deployer.envelopes import SoapFault, parse_soap_fault
from sf_metadata.errors import AuthenticationError, SalesforceError

__all__ = ["OrgClient"]

Login = Callable[..., Salesforce]


class OrgClient:
    """One logged-in org. ``api_version`` is ``"NN.0"``; change it with :meth:`use_version`.

    Every method raises :class:`AuthenticationError` when the session expired and cannot be
    refreshed (or expired again after one re-login), and :class:`SalesforceError` for other
    Salesforce or network failures.
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
        self._session = session
        self._login = login_fn
        self._relogged = False
        self.api_version = api_version
        self.sf = login_fn(credentials, api_version=api_version, session=session)

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

    def _expired(self) -> None:
        """Log in again once, or raise :class:`AuthenticationError`."""
        if not self.credentials.refreshable:
            raise AuthenticationError(
                "the Salesforce session expired and an existing session "
                "(--access-token/SF_ACCESS_TOKEN) cannot be refreshed: get a new access "
                "token, or use JWT or client credentials"
            )
        if self._relogged:
            raise AuthenticationError(
                "the Salesforce session expired again right after logging in: check the "
                "connected app's session policies"
            )
        self._relogged = True
        self.sf = self._login(self.credentials, api_version=self.api_version, session=self._session)
        self.use_version(self.api_version)

    def _call(self, fn: Callable[[], Any], what: str, *, missing_ok: bool = False) -> Any:
        """Run ``fn``; a 404 re-raises ``SalesforceResourceNotFound`` only when
        ``missing_ok``, else it becomes :class:`SalesforceError` like every other failure."""
        for _ in range(2):
            try:
                return fn()
            except SalesforceExpiredSession:
                self._expired()
            except SalesforceResourceNotFound as exc:
                if missing_ok:
                    raise
                raise SalesforceError(f"Salesforce found no {what}: {_rest_error(exc)}") from None
            except SalesforceMalformedRequest as exc:
                raise SalesforceError(f"Salesforce refused {what}: {_rest_error(exc)}") from None
            except _SfError as exc:
                raise SalesforceError(
                    f"Salesforce answered HTTP {exc.status} to {what}: {_rest_error(exc)}"
                ) from None
            except requests.RequestException as exc:
                raise SalesforceError(
                    f"cannot reach Salesforce for {what} ({type(exc).__name__})"
                ) from None
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
            except SalesforceError:
                raise SalesforceError(str(first)) from None
            me = me or {}
            return {"user_id": me.get("id"), "preferred_username": me.get("username")}

    def max_api_version(self) -> str:
        """The highest API version the org serves (``GET /services/data/``)."""

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
                ) from None
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
