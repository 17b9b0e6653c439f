"""An in-process fake of the REST query resource for reconcile tests: a ``requests``
transport adapter that serves the Organization check, ``describe(User)`` and the User
query in pages (``nextRecordsUrl``), from records the test holds (and may change between
calls)::

    org = FakeSalesforce(org_id, records, page_size=3)
    reader = org.reader()            # a deployer.users.UserReader over it
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import requests
from requests.adapters import BaseAdapter

from deployer.users import CallCounter, StaticSession, UserReader

__all__ = ["FakeSalesforce"]

HOST = "fake.my.salesforce.com"


class FakeSalesforce(BaseAdapter):
    """Serves ``GET /services/data/vNN.0/query?q=...`` (Organization or User: every record,
    or with ``WHERE Id IN (...)`` those ids') and the cursor pages, and
    ``sobjects/User/describe`` (``custom_fields`` as string fields)."""

    def __init__(
        self,
        org_id: str,
        records: list[dict[str, Any]],
        *,
        page_size: int = 2000,
        custom_fields: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.org_id = org_id
        self.records = records
        #: answer every request 503 Service Unavailable (Salesforce down, or unreachable)
        self.unavailable = False
        self.page_size = page_size
        self.custom_fields = custom_fields
        self.queries: list[str] = []
        self._snapshot: list[dict[str, Any]] = []

    def store_connection(
        self, session: Any, organization: str, *, key: bytes, now: datetime
    ) -> None:
        """Store a client-credentials connection of ``organization`` to this fake's org
        (what ``org connect`` would store; the tests read through :meth:`reader`)."""
        from receiver.salesforce_connection import save_connection

        save_connection(
            session,
            organization=organization,
            kind="client-credentials",
            instance_url=f"https://{HOST}",
            salesforce_org_id=self.org_id,
            is_sandbox=False,
            username="integration@acme.com",
            user_id=None,
            login_url=None,
            secrets={"consumer_key": "k", "consumer_secret": "s", "domain": "fake.my"},
            key=key,
            now=now,
        )

    def reader(self) -> UserReader:
        http = requests.Session()
        http.mount(f"https://{HOST}", self)
        return UserReader(http, StaticSession(f"https://{HOST}", "token"), "62.0", CallCounter())

    def _answer(self, path: str, query: str) -> Any:
        from urllib.parse import parse_qs

        if path.endswith("/sobjects/User/describe"):
            return {
                "fields": [
                    {"name": n, "custom": True, "type": "string", "length": 80}
                    for n in self.custom_fields
                ]
            }
        if path.endswith("/query"):
            soql = parse_qs(query)["q"][0]
            self.queries.append(soql)
            if "FROM Organization" in soql:
                return {"totalSize": 1, "done": True, "records": [{"Id": self.org_id}]}
            records = self.records
            if " WHERE Id IN (" in soql:  # a read of chosen users
                chosen = set(re.findall(r"'(005\w{15})'", soql.split(" WHERE Id IN (", 1)[1]))
                records = [r for r in records if r["Id"] in chosen]
            self._snapshot = [dict(r) for r in records]  # the cursor's snapshot
            return self._page(0)
        start = int(path.rsplit("-", 1)[1])
        return self._page(start)

    def _page(self, start: int) -> dict[str, Any]:
        chunk = self._snapshot[start : start + self.page_size]
        end = start + len(chunk)
        page: dict[str, Any] = {
            "totalSize": len(self._snapshot),
            "done": end >= len(self._snapshot),
            "records": chunk,
        }
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v62.0/query/01gFAKE-{end}"
        return page

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        from urllib.parse import urlsplit

        parts = urlsplit(request.url or "")
        response = requests.Response()
        if self.unavailable:
            response.status_code = 503
            response._content = b'[{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}]'
        else:
            response.status_code = 200
            response._content = json.dumps(self._answer(parts.path, parts.query)).encode()
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass
