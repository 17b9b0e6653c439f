"""The Provisioning log page's filters and rows: action, outcome, source (Outbound
Message, Reconcile, Replay), Salesforce user and date, read from a query
(:func:`parse_filter`, each unreadable value named and left out), and :class:`LogRow`,
one table row. The paged reads are ``receiver.dashboard.logpages``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from receiver.outcomes import MessageOutcome
from sf_metadata.errors import InvalidSalesforceId
from sf_metadata.ids import USER, typed_id

__all__ = [
    "ACTIONS",
    "OUTCOMES",
    "SOURCES",
    "SOURCE_LABELS",
    "LogFilter",
    "LogRow",
    "parse_filter",
    "row_id",
]

#: The notification actions of CONTRACT section 3.
ACTIONS = (
    "created",
    "updated",
    "deprovisioned",
    "restored",
    "duplicate",
    "stale",
    "ignored",
    "failed",
)
#: The message outcomes the Outcome filter offers (``receiver.outcomes``).
OUTCOMES = tuple(o.value for o in MessageOutcome)
#: Notification rows a page (``receiver.dashboard.logpages``).
ROWS_PER_PAGE = 100

#: ``provisioning_message.source`` -> what the page calls it.
SOURCE_LABELS = {
    "outbound-message": "Outbound Message",
    "reconcile": "Reconcile",
    "replay": "Replay",
}
#: The sources the Source filter offers (``receiver.provisioning.SourceKind`` values).
SOURCES = tuple(SOURCE_LABELS)


#: The largest row id of the store (PostgreSQL ``integer``); larger numbers are no id.
_MAX_ID = 2**31 - 1


def row_id(raw: str) -> int | None:
    """``raw`` as a row id: ASCII digits only (``str.isdigit`` also takes ``²`` and
    Arabic-Indic digits, which ``int`` then refuses or reads), at most :data:`_MAX_ID`;
    else ``None``."""
    if not raw or len(raw) > 10 or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= _MAX_ID else None


@dataclass(frozen=True, slots=True)
class LogFilter:
    """The page's filters; ``problems`` lists the ones that could not be read (ignored),
    ``notes`` what was read otherwise than typed (a From date after the To date: swapped)."""

    action: str | None = None
    outcome: str | None = None
    crm_id: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    problems: tuple[str, ...] = ()
    raw: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: the ``raw`` keys kept as typed (so the form shows them) though they were not read
    unread: tuple[str, ...] = ()

    def query(self) -> dict[str, str]:
        """The filter as query parameters (for links and downloads)."""
        return {k: v for k, v in self.raw.items() if v}

    def readable(self) -> dict[str, str]:
        """The filters that were read, as query parameters: what a Replay form carries
        (one with a filter that was not read would replay nothing: attack finding)."""
        return {k: v for k, v in self.query().items() if k not in self.unread}


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(value: str) -> date | None:
    """``YYYY-MM-DD`` only, as the date box sends it (``date.fromisoformat`` also reads
    ``20261205`` and ``2026-W49-1``, which the box cannot show: attack finding)."""
    if _DATE.fullmatch(value) is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_filter(params: Any) -> LogFilter:
    """Read ``action``, ``outcome``, ``source`` (one of :data:`SOURCES`), ``user``
    (Salesforce User id), ``from`` and ``to``
    (``YYYY-MM-DD``, UTC, inclusive) from a query mapping. A value that cannot be read is
    left out and named in ``problems``. A From date after the To date is read as the range
    between them (the two swapped, also in ``raw`` so the form shows them so) and said in
    ``notes``: an admin who typed them the wrong way round sees the days meant, not an empty
    log."""
    problems: list[str] = []
    raw = {
        k: str(params.get(k, ""))[:100].strip()
        for k in ("action", "outcome", "source", "user", "from", "to")
    }
    action = raw["action"] or None
    if action is not None and action not in ACTIONS:
        problems.append("unknown action: choose one of the list")  # never echoed
        action = None
        raw["action"] = ""
    outcome = raw["outcome"] or None
    if outcome is not None and outcome not in OUTCOMES:
        problems.append("unknown outcome: choose one of the list")
        outcome = None
        raw["outcome"] = ""
    source = raw["source"] or None
    if source is not None and source not in SOURCES:
        problems.append("unknown source: choose one of the list")  # never echoed
        source = None
        raw["source"] = ""
    crm_id = None
    unread: list[str] = []
    if raw["user"]:
        try:
            crm_id = typed_id(raw["user"], USER)
        except InvalidSalesforceId:
            unread.append("user")  # stays in the box, to be corrected
            problems.append(
                "the Salesforce user id is not a User id (005…, 15 or 18 characters; find a "
                "user by name with Search on the Users page: the id is on their page)"
            )
    notes: list[str] = []
    first, last = _date(raw["from"]), _date(raw["to"])
    if first is not None and last is not None and first > last:
        notes.append(
            f"From {first.isoformat()} was after To {last.isoformat()}: the dates were swapped"
        )
        raw["from"], raw["to"] = raw["to"], raw["from"]
    since = until = None
    if raw["from"]:
        d = _date(raw["from"])
        if d is None:
            problems.append("the From date is not YYYY-MM-DD")
            raw["from"] = ""
        else:
            since = datetime.combine(d, time.min, tzinfo=UTC)
    if raw["to"]:
        d = _date(raw["to"])
        if d is None:
            problems.append("the To date is not YYYY-MM-DD")
            raw["to"] = ""
        elif d < date.max:
            until = datetime.combine(d, time.min, tzinfo=UTC) + timedelta(days=1)
    return LogFilter(
        action,
        outcome,
        crm_id,
        source,
        since,
        until,
        tuple(problems),
        raw,
        tuple(notes),
        tuple(unread),
    )


@dataclass(frozen=True, slots=True)
class LogRow:
    """One table row: a notification of a message, or a message without notifications
    (``event_id`` is then ``None``)."""

    message_id: int
    received_at: datetime
    outcome: str
    detail: str | None
    action_id: str | None
    event_id: int | None
    position: int | None
    notification_id: str | None
    crm_id: str | None
    action: str | None
    reason: str | None
    source: str = "outbound-message"
    #: The reconcile plan id of a reconcile's row (``provisioning_message.source_ref``).
    plan_id: str | None = None

    @property
    def source_label(self) -> str:
        """Where the row's decision came from, as the page says it: an Outbound Message,
        a reconcile plan or a replay (``provisioning_message.source``)."""
        return SOURCE_LABELS.get(self.source, self.source)

    def to_json(self) -> dict[str, Any]:
        """The row for the JSON download."""
        return {
            "messageId": self.message_id,
            "receivedAt": self.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "outcome": self.outcome,
            "detail": self.detail,
            "position": self.position,
            "notificationId": self.notification_id,
            "crmId": self.crm_id,
            "action": self.action,
            "reason": self.reason,
        }
