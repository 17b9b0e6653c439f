"""Builds the reconcile cassettes in ``cassettes/synthetic/reconcile/``: the REST exchanges of a
reconcile read (client-credentials login, the Organization check, describe User, the User
query pages with ``nextRecordsUrl``), in the shapes of the REST Query resource
(``salesforce-facts-2026.md`` Q5), written through the same scrubbing hooks as a live
recording (``tests.deployer._vcr.Scrubber``). Regenerate with::

    .venv/bin/python -m tests.deployer.reconcile_cassettes

Users are ``make_user_record(1..7)``; pages of 3, 3 and 1 records. ``chosen`` and
``chosen_unknown`` are reads of chosen ids (``Id IN (...)``: user 2, deactivated since;
an id Salesforce does not return).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from vcr.request import Request
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from sf_metadata.soql import user_query
from tests.deployer._vcr import CASSETTES, Scrubber
from tests.deployer.cassette_builder import LIVE_HOST, LIVE_SESSION, ORG_ID, OTHER_ORG_ID, V
from tests.deployer.cassette_builder import token_call as _token_call
from tests.user_records import make_user_record, query_page

RECONCILE_CASSETTES = CASSETTES / "reconcile"
Interaction = tuple[Request, dict[str, Any]]
CUSTOM_FIELD = "Team__c"
QUERY = user_query([CUSTOM_FIELD])
USERS = [make_user_record(n, Team__c=f"team-{n % 2}") for n in range(1, 8)]
#: The same users a day later: every one deactivated (a mass deletion for the guard).
DEACTIVATED = [
    make_user_record(
        n, Team__c=f"team-{n % 2}", IsActive=False, SystemModstamp="2026-11-21T10:00:00.000Z"
    )
    for n in range(1, 8)
]
CURSOR = "01gAb0000000001AAA"


def _response(body: Any, status: int = 200) -> dict[str, Any]:
    message = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 500: "Server Error"}[status]
    return {
        "status": {"code": status, "message": message},
        "headers": {
            "Content-Type": ["application/json;charset=UTF-8"],
            "Sforce-Limit-Info": ["api-usage=10/15000"],
        },
        "body": {"string": json.dumps(body, indent=1).encode("utf-8")},
    }


def _get(path: str, params: dict[str, str] | None = None) -> Request:
    uri = f"https://{LIVE_HOST}{path}" + ("?" + urlencode(params) if params else "")
    return Request(
        "GET",
        uri,
        None,
        {"Authorization": "Bearer " + LIVE_SESSION, "Sforce-Query-Options": "batchSize=2000"},
    )


def token_call() -> Interaction:
    return _token_call()


def org_check(org_id: str = ORG_ID) -> Interaction:
    records = [{"attributes": {"type": "Organization"}, "Id": org_id}]
    return _get(f"/services/data/v{V}/query", {"q": "SELECT Id FROM Organization"}), _response(
        {"totalSize": 1, "done": True, "records": records}
    )


def describe_user() -> Interaction:
    fields = [
        {"name": "Id", "custom": False, "type": "id"},
        {"name": CUSTOM_FIELD, "custom": True, "type": "string", "length": 80},
        {"name": "Notes__c", "custom": True, "type": "textarea", "length": 32000},
    ]
    return _get(f"/services/data/v{V}/sobjects/User/describe"), _response({"fields": fields})


def page(n: int, status: int = 200, body: Any = None) -> Interaction:
    """Page ``n`` (1-based) of the User query: 1 is the query, then the cursor URLs."""
    chunks = [USERS[0:3], USERS[3:6], USERS[6:7]]
    if n == 1:
        request = _get(f"/services/data/v{V}/query", {"q": QUERY})
    else:
        request = _get(f"/services/data/v{V}/query/{CURSOR}-{(n - 1) * 3}")
    if body is None:
        next_url = f"/services/data/v{V}/query/{CURSOR}-{n * 3}" if n < 3 else None
        body = query_page(chunks[n - 1], total=len(USERS), next_url=next_url)
    return request, _response(body, status)


#: The users a read of chosen ids asks for (``reconcile run --user``, ``Sync now``): user 2,
#: and an id Salesforce does not know.
CHOSEN_ID = USERS[1]["Id"]
UNKNOWN_ID = "005Ab0000000099IAA"


def chosen(ids: list[str], records: list[dict[str, Any]]) -> Interaction:
    """The one query of a read of chosen users (no further page)."""
    request = _get(f"/services/data/v{V}/query", {"q": user_query([CUSTOM_FIELD], ids=ids)})
    return request, _response(query_page(records, total=len(records), next_url=None))


def expired() -> dict[str, Any]:
    return _response(
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
    )


def scenarios() -> dict[str, list[Interaction]]:
    return {
        "pages": [token_call(), org_check(), describe_user(), page(1), page(2), page(3)],
        "expired_session_refresh": [
            token_call(),
            org_check(),
            describe_user(),
            page(1),
            (page(2)[0], expired()),
            token_call(),
            page(2),
            page(3),
        ],
        "failing_page": [
            token_call(),
            org_check(),
            describe_user(),
            page(1),
            page(
                2,
                500,
                [{"message": "An unexpected error occurred", "errorCode": "UNKNOWN_EXCEPTION"}],
            ),
        ],
        "other_org": [token_call(), org_check(OTHER_ORG_ID)],
        # user 2 deactivated, read alone
        "chosen": [
            token_call(),
            org_check(),
            describe_user(),
            chosen([CHOSEN_ID], [DEACTIVATED[1]]),
        ],
        "chosen_unknown": [token_call(), org_check(), describe_user(), chosen([UNKNOWN_ID], [])],
        "deactivated": [
            token_call(),
            org_check(),
            describe_user(),
            (page(1)[0], _response(query_page(DEACTIVATED, total=7, next_url=None))),
        ],
    }


def build(names: Iterable[str] | None = None) -> list[str]:
    """Write the cassettes (all, or ``names``); return the names written."""
    RECONCILE_CASSETTES.mkdir(parents=True, exist_ok=True)
    written = []
    for name, interactions in scenarios().items():
        if names is not None and name not in names:
            continue
        scrubber = Scrubber()
        requests = [scrubber.request(r) for r, _ in interactions]
        responses = [scrubber.response(resp) for _, resp in interactions]
        text = serialize({"requests": requests, "responses": responses}, yamlserializer)
        (RECONCILE_CASSETTES / f"{name}.yaml").write_text(text, encoding="utf-8")
        written.append(name)
    return written


if __name__ == "__main__":  # pragma: no cover
    for written_name in build():
        print(written_name)  # noqa: T201
