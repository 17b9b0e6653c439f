"""Factory of SOQL JSON User records (what ``GET /services/data/vNN.0/query`` returns
for reconcile), built from :func:`tests.factories.make_user_fields`::

    record = make_user_record(7, IsActive=False, Email="shared@acme.com")

Ids come from ``sf_id("005", n)``; booleans are JSON booleans, nulls JSON null (a
``None`` override makes the field null, as SOQL returns every selected field).
"""

from __future__ import annotations

from typing import Any

from sf_metadata.soql import user_fields
from tests.factories import make_user_fields, sf_id

__all__ = ["make_user_record", "query_page"]


def make_user_record(n: int, api_version: str = "62.0", **overrides: Any) -> dict[str, Any]:
    """One User record (every field of :func:`~sf_metadata.soql.user_fields` plus custom
    fields in ``overrides``); ``IsActive`` may be given as a bool."""
    user_id = sf_id("005", n)
    nulls = {k for k, v in overrides.items() if v is None}
    base: dict[str, Any] = {
        "Username": f"agent{n}@acme.com",
        "Email": f"agent{n}@acme.com",
        "Name": f"Agent {n}",
        "LastName": f"Agent{n}",
    }
    base.update({k: v for k, v in overrides.items() if v is not None and not isinstance(v, bool)})
    fields = make_user_fields(**base)
    record: dict[str, Any] = {
        "attributes": {
            "type": "User",
            "url": f"/services/data/v{api_version}/sobjects/User/{user_id}",
        },
        "Id": user_id,
    }
    for name in user_fields(k for k in overrides if k.endswith("__c")):
        if name == "Id":
            continue
        record[name] = None if name in nulls else fields.get(name)
    active = overrides.get("IsActive", True)
    record["IsActive"] = (
        None
        if "IsActive" in nulls
        else active
        if isinstance(active, bool)
        else str(active).lower() == "true"
    )
    for name in ("SystemModstamp", "LastModifiedDate"):
        value = record.get(name)
        if isinstance(value, str) and value.endswith("Z"):
            record[name] = value[:-1] + "+0000"  # SOQL JSON writes the offset
    return record


def query_page(
    records: list[dict[str, Any]], *, total: int, next_url: str | None
) -> dict[str, Any]:
    """A query result page (``nextRecordsUrl`` present only when not done)."""
    page: dict[str, Any] = {"totalSize": total, "done": next_url is None, "records": records}
    if next_url is not None:
        page["nextRecordsUrl"] = next_url
    return page
