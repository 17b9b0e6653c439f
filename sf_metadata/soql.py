"""SOQL for reconcile, and SOQL JSON records turned into notification-like field text.

Pure. The field list is the Outbound Message's (``sf_metadata.metadata_names``), so the
webhook and reconcile map the same User fields; the custom fields are the org's, as the
deployer picks them from ``describe(User)`` (``deployer.preflight.custom_user_fields``).

Facts (reference ``salesforce-facts-2026.md`` Q5):

- SOQL returns inactive users too (no ``queryAll`` needed), so the query has no
  ``IsActive`` filter.
- No ``UserType`` filter either: the Outbound Message trigger fires for every User
  (``templates/workflow.xml.j2`` formula ``true``, the flow has no entry criteria), so the
  webhook maps every user type; reconcile reads the same population or the two would
  disagree about who is an agent.
- ``ORDER BY Id`` makes the pages deterministic (cassettes, resumable reading).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sf_metadata.metadata_names import OUTBOUND_MESSAGE_FIELDS, SOBJECT_TYPE

__all__ = [
    "DEFAULT_OVERLAP",
    "MAX_IDS",
    "record_fields",
    "soql_datetime",
    "soql_quote",
    "user_fields",
    "user_query",
]

#: How far an incremental run reaches back before its watermark: a long-running
#: transaction can commit a change stamped before the previous run ended (Salesforce's own
#: ``getUpdated()`` has the same caveat, reference ``dashboard-anchors.md`` (c)).
DEFAULT_OVERLAP = timedelta(minutes=15)


def soql_quote(value: str) -> str:
    """A SOQL string literal: ``'...'`` with ``\\``, ``'``, ``"``, newline, tab and the
    other escapes of the SOQL reference ("Quoted String Escape Sequences")."""
    escapes = {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\b": "\\b",
        "\f": "\\f",
    }
    return "'" + "".join(escapes.get(ch, ch) for ch in value) + "'"


def soql_datetime(value: datetime) -> str:
    """A SOQL dateTime literal (unquoted, UTC): ``2026-11-02T10:00:00Z``. ``value`` must
    be aware; raises ``ValueError`` for a naive one."""
    if value.tzinfo is None:
        raise ValueError("soql_datetime needs an aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_fields(custom_fields: Iterable[str] = ()) -> tuple[str, ...]:
    """The User fields reconcile selects: the Outbound Message's fields
    (:data:`~sf_metadata.metadata_names.OUTBOUND_MESSAGE_FIELDS`: Id, SystemModstamp,
    LastModifiedDate and the mapped fields), then the custom ``..__c`` fields (sorted,
    unique; anything not ending in ``__c`` is refused with ``ValueError``)."""
    custom = sorted(set(custom_fields))
    for name in custom:
        if not name.endswith("__c") or not name.replace("_", "").isalnum():
            raise ValueError(f"{name!r} is not a custom field API name")
    return (*OUTBOUND_MESSAGE_FIELDS, *custom)


#: At most this many ids in one read of chosen users (:func:`user_query`'s ``ids``): the
#: query travels in the URL of a GET (``/query?q=``), and 200 ids keep it near 5,000
#: characters, far below the 16,384 Salesforce takes in a REST URI.
MAX_IDS = 200


def user_query(
    custom_fields: Iterable[str] = (),
    *,
    since: datetime | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    ids: Sequence[str] | None = None,
) -> str:
    """The SOQL of a reconcile read: every User (full run, ``since`` is ``None``), those
    with ``SystemModstamp >= since - overlap`` (incremental run), or with ``ids`` only the
    Users of those ids (``Id IN (...)``, each quoted; 1 to :data:`MAX_IDS` of them, else
    ``ValueError``); ``ORDER BY Id``."""
    select = ", ".join(user_fields(custom_fields))
    where = ""
    if ids is not None:
        if not 0 < len(ids) <= MAX_IDS:
            raise ValueError(f"a read of chosen users takes 1 to {MAX_IDS} ids, not {len(ids)}")
        where = f" WHERE Id IN ({', '.join(map(soql_quote, ids))})"
    elif since is not None:
        where = f" WHERE SystemModstamp >= {soql_datetime(since - overlap)}"
    return f"SELECT {select} FROM {SOBJECT_TYPE}{where} ORDER BY Id"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    # A nested value (address, relationship) is not a field the mapping reads as text.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def record_fields(record: Mapping[str, Any]) -> dict[str, str | None]:
    """A SOQL JSON record (``{"attributes": ..., "Id": ..., "IsActive": true, ...}``) as
    the field text an Outbound Message would carry: booleans ``true``/``false``, numbers
    as JSON text, strings as they are; ``attributes`` dropped; null fields left out (an
    Outbound Message leaves null fields out, CONTRACT section 6: "a null one is left
    out"), so a null custom field is not in ``customFields``."""
    out: dict[str, str | None] = {}
    for name, value in record.items():
        if value is None or name == "attributes":
            continue
        kind = type(value)
        # The common exact types first (the same text as _text gives: json.dumps of an
        # int is int.__repr__); anything else, subclasses included, goes through _text.
        if kind is str:
            out[name] = value
        elif kind is bool:
            out[name] = "true" if value else "false"
        elif kind is int:
            out[name] = int.__repr__(value)
        else:
            out[name] = _text(value)
    return out
