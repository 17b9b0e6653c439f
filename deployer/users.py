"""Read every User of an org through the REST query resource, page by page.

``GET /services/data/vNN.0/query?q=SOQL`` with ``Sforce-Query-Options: batchSize=N``, then
each ``nextRecordsUrl`` until ``done`` (reference ``salesforce-facts-2026.md`` Q5: "The
default is 2,000; the minimum is 200, and the maximum is 2,000. There is no guarantee that
the requested batch size is the actual batch size"; since API 56 a cursor stays readable
for 2 days, so an expired session refreshed mid-run continues from the same
``nextRecordsUrl``).

Every HTTP request the run makes is counted (:class:`CallCounter`; logins included, when
the login goes through a session the counter hooks). Failures:

- ``401``/``INVALID_SESSION_ID``: the session is refreshed once per page (credentials that
  can refresh), else :class:`~sf_metadata.errors.AuthenticationError` (exit 3);
- a TLS certificate that is not trusted: :class:`~sf_metadata.errors.SalesforceUnreadable`
  at once (retrying cannot help);
- ``503``, ``502``, ``504``, a timeout or a reset, and ``REQUEST_LIMIT_EXCEEDED`` (HTTP 403:
  the org's rolling 24-hour API allowance, or too many concurrent long requests): backed
  off exponentially (``Retry-After`` honoured) a bounded number of times, then
  :class:`~sf_metadata.errors.SalesforceUnreadable` (exit 9) naming the cause;
- any other answer, a body that is not a query result: :class:`SalesforceUnreadable`.

A page that fails is never read as an absence: the caller gets the error before any
write (an iterator that raises). :meth:`UserReader.raw_pages` gives each record as the
JSON text read, unparsed (``deployer.pages``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import requests

from deployer.client import OrgClient
from deployer.pages import RawPage, decode_page, parse_body
from sf_metadata.errors import AuthenticationError, SalesforceUnreadable, Setting
from sf_metadata.ids import same_org_id

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "CallCounter",
    "ClientSession",
    "LoginSession",
    "QueryPage",
    "QuerySession",
    "RawPage",
    "StaticSession",
    "UserReader",
]

#: Records per page asked for (the maximum, so 50,000 users are 25 pages).
DEFAULT_BATCH_SIZE = 2000
_RETRY_STATUSES = frozenset({502, 503, 504})


class CallCounter:
    """Counts HTTP requests to Salesforce. :meth:`hook` is a ``requests`` response hook
    (``session.hooks["response"].append(counter.hook)``); :meth:`add` counts by hand."""

    def __init__(self) -> None:
        self.calls = 0

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    def add(self, n: int = 1) -> None:
        self.calls += n

    def attach(self, session: requests.Session) -> requests.Session:
        """Hook ``session`` (returned) so every response it gets is counted (once, however
        often this is called)."""
        hooks = session.hooks.setdefault("response", [])
        if self.hook not in hooks:
            hooks.append(self.hook)
        return session


class QuerySession(Protocol):
    """A logged-in org as the reader needs it: ``instance_url`` (``https://host``, no
    trailing slash) and ``access_token``; :meth:`refresh` replaces an expired token or
    raises :class:`AuthenticationError`."""

    @property
    def instance_url(self) -> str: ...

    @property
    def access_token(self) -> str: ...

    def refresh(self) -> None: ...


@dataclass
class StaticSession:
    """An existing session (``--instance-url`` + ``--access-token``), or any token with a
    ``refresh_fn`` that returns ``(instance_url, access_token)``."""

    instance_url: str
    access_token: str = field(repr=False)
    refresh_fn: Callable[[], tuple[str, str]] | None = field(default=None, repr=False)

    def refresh(self) -> None:
        if self.refresh_fn is None:
            raise AuthenticationError(
                "the Salesforce session expired and an existing session (an access token) "
                "cannot be refreshed: get a new access token, or use JWT or client "
                "credentials",
                setting=Setting.ACCESS_TOKEN,
            )
        self.instance_url, self.access_token = self.refresh_fn()


class LoginSession:
    """:class:`QuerySession` that logs in with ``credentials`` (through ``http``, so a
    :class:`CallCounter` attached to it counts the login) and logs in again on
    :meth:`refresh` (an existing session cannot: :class:`AuthenticationError`)."""

    def __init__(self, credentials: Any, api_version: str, http: requests.Session) -> None:
        self._credentials = credentials
        self._api_version = api_version
        self._http = http
        self._sf: Any = None
        self._login()

    def _login(self) -> None:
        from deployer.credentials import login

        self._sf = login(self._credentials, api_version=self._api_version, session=self._http)

    @property
    def instance_url(self) -> str:
        return f"https://{self._sf.sf_instance}"

    @property
    def access_token(self) -> str:
        return str(self._sf.session_id)

    def refresh(self) -> None:
        if not self._credentials.refreshable:
            StaticSession("", "").refresh()
        self._login()


class ClientSession:
    """:class:`QuerySession` over a logged-in :class:`deployer.client.OrgClient` (its
    ``instance_url``, ``access_token`` and ``refresh_session``: a re-login, or an OAuth
    refresh for a stored connection)."""

    def __init__(self, client: OrgClient) -> None:
        self._client = client

    @property
    def instance_url(self) -> str:
        return self._client.instance_url

    @property
    def access_token(self) -> str:
        return self._client.access_token

    def refresh(self) -> None:
        self._client.refresh_session()


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One page: its records (SOQL JSON objects), ``total_size`` as Salesforce reported
    it, and whether it is the last one."""

    records: list[dict[str, Any]]
    total_size: int
    done: bool


@dataclass
class UserReader:
    """Pages of one SOQL query. ``sleep`` and ``max_attempts``/``base_delay`` bound the
    backoff (waits of ``base_delay * 2**n`` seconds, at most ``max_delay`` each);
    ``on_wait``, when set, is told each wait before it starts, in words (what failed, the
    attempt to come, the seconds), so a person watching a run sees why it stands still."""

    http: requests.Session
    org: QuerySession
    api_version: str
    counter: CallCounter
    batch_size: int = DEFAULT_BATCH_SIZE
    timeout: float = 120.0
    max_attempts: int = 6
    base_delay: float = 2.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    on_wait: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.counter.attach(self.http)

    def pages(self, soql: str) -> Iterator[QueryPage]:
        """Yield every page of ``soql`` in order, each record parsed. Raises
        :class:`SalesforceUnreadable` or :class:`AuthenticationError` as the module
        docstring says."""
        for page in self.raw_pages(soql):
            records = [r for r in map(page.parse, page.records) if isinstance(r, dict)]
            yield QueryPage(records, page.total_size, page.done)

    def raw_pages(self, soql: str) -> Iterator[RawPage]:
        """:meth:`pages` with every record as the JSON text read, unparsed
        (``deployer.pages.decode_page``)."""
        path: str | None = f"/services/data/v{self.api_version}/query?q={quote(soql, safe='')}"
        number = 0
        while path is not None:
            number += 1
            what = f"page {number} of the User query"
            page, next_url = decode_page(self._fetch(path, what), number)
            yield page
            path = None if page.done else str(next_url)

    def organization_id(self) -> str:
        """The org's ``Organization.Id`` (one request), to check a read is of the org we
        registered (after a sandbox refresh the same credentials may reach another)."""
        path = f"/services/data/v{self.api_version}/query?q=" + quote(
            "SELECT Id FROM Organization", safe=""
        )
        body = self._get(path, "the Organization query")
        records = body.get("records") or []
        if not records or not isinstance(records[0], dict) or not records[0].get("Id"):
            raise SalesforceUnreadable("Salesforce returned no Organization record")
        return str(records[0]["Id"])

    def custom_fields(self) -> tuple[str, ...]:
        """The custom User fields the Outbound Message sends (one request:
        ``GET sobjects/User/describe``, filtered as the deployer filters them,
        :func:`deployer.preflight.custom_user_fields`)."""
        from deployer.preflight import custom_user_fields

        body = self._get(
            f"/services/data/v{self.api_version}/sobjects/User/describe", "describe User"
        )
        return custom_user_fields(body)

    def check_organization(self, expected: str) -> None:
        """Raise :class:`SalesforceUnreadable` when the org is not ``expected`` (first 15
        characters, case-sensitive)."""
        actual = self.organization_id()
        if not same_org_id(actual, expected):
            raise SalesforceUnreadable(
                f"the credentials reach Salesforce org {actual}, not the registered "
                f"{expected} (a sandbox refresh?): nothing was read or written; update the "
                "organization's Salesforce org id or connect the right org",
                setting=Setting.SALESFORCE_ORG_ID,
            )

    def _get(self, path: str, what: str) -> dict[str, Any]:
        return parse_body(self._fetch(path, what), what)

    def _fetch(self, path: str, what: str) -> bytes:
        """The body of the 200 answer to ``GET path`` (refreshing, backing off and
        raising as the module docstring says)."""
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {
                "Authorization": f"Bearer {self.org.access_token}",
                "Accept": "application/json",
                "Sforce-Query-Options": f"batchSize={self.batch_size}",
            }
            url = self.org.instance_url.rstrip("/") + path
            try:
                response = self.http.get(url, headers=headers, timeout=self.timeout)
            except requests.exceptions.SSLError:
                # A certificate that is not trusted stays untrusted: no backing off.
                self.counter.add()
                raise SalesforceUnreadable(
                    f"{what}: the TLS certificate of {self.org.instance_url} is not trusted "
                    "(SSLError): nothing was written; check the instance URL (or the CA "
                    "bundle, REQUESTS_CA_BUNDLE)"
                ) from None
            except requests.RequestException as exc:
                self.counter.add()  # sent (or tried) without an answer: the hook saw nothing
                cause = f"cannot reach Salesforce ({type(exc).__name__})"
                self._back_off(attempt, what, cause, None)
                continue
            status = response.status_code
            if status == 200:
                return response.content
            code, message = _error_code(response)
            if status == 401 or code == "INVALID_SESSION_ID":
                if refreshed:
                    raise AuthenticationError(
                        f"{what}: the Salesforce session expired again right after it was "
                        "refreshed: check the connected app's session policies"
                    )
                self.org.refresh()
                refreshed = True
                continue
            if code == "REQUEST_LIMIT_EXCEEDED":
                cause = (
                    f"Salesforce refused with REQUEST_LIMIT_EXCEEDED ({message}): the org's "
                    "API request allowance is used up for now"
                )
                self._back_off(attempt, what, cause, response)
                continue
            if status in _RETRY_STATUSES:
                self._back_off(attempt, what, f"Salesforce answered HTTP {status}", response)
                continue
            detail = f"{code}: {message}" if code else f"HTTP {status}"
            raise SalesforceUnreadable(f"{what}: Salesforce answered {detail}: nothing was written")

    def _back_off(
        self, attempt: int, what: str, cause: str, response: requests.Response | None
    ) -> None:
        if attempt >= self.max_attempts:
            raise SalesforceUnreadable(
                f"{what}: {cause}; gave up after {attempt} attempts "
                f"({self.counter.calls} API calls made): nothing was written, try again later"
            )
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.strip().isdigit():
            delay = min(self.max_delay, max(delay, float(retry_after.strip())))
        if self.on_wait is not None:
            self.on_wait(
                f"{what}: {cause}; attempt {attempt + 1} of {self.max_attempts} in {delay:.0f} s"
            )
        self.sleep(delay)


def _error_code(response: requests.Response) -> tuple[str, str]:
    """``(errorCode, message)`` of a REST error body (``[{"errorCode", "message"}]``)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        return str(body[0].get("errorCode", "")), str(body[0].get("message", ""))[:300]
    if isinstance(body, Mapping):
        return str(body.get("errorCode", "")), str(body.get("message", ""))[:300]
    return "", ""
