"""The pure provisioning decision: (notifications, stored state) -> one Decision each.

No I/O: the store loads a :class:`StoredState` snapshot for the users, usernames and
notification ids of one message (one query per table), calls :func:`plan_message`, and
writes the decisions back in the same transaction. The coming reconcile run builds the
same snapshot from SOQL results and calls the same function.

Rules: ``../shared/CONTRACT.md`` section 2 (lifecycle, order, duplicates, collisions).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sf_metadata.mapping import AgentRecord

__all__ = ["Action", "Decision", "StoredState", "StoredUser", "plan_message"]


class Action(enum.StrEnum):
    """What one notification did. The values are the provisioning log's words."""

    CREATED = "created"
    UPDATED = "updated"
    DEPROVISIONED = "deprovisioned"
    RESTORED = "restored"
    DUPLICATE = "duplicate"
    STALE = "stale"
    IGNORED = "ignored"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StoredUser:
    """What the store holds for one Salesforce user of one organization.

    ``provisioned`` is False for a tombstone. ``agent_id`` is our internal agent id
    (``None`` for a tombstone of a user that was never provisioned). ``system_modstamp``
    is the stamp of the last applied change (UTC, aware), ``None`` if none was known.
    """

    crm_id: str
    agent_id: str | None
    provisioned: bool
    system_modstamp: datetime | None
    username: str | None


@dataclass(frozen=True, slots=True)
class StoredState:
    """Snapshot of the store for one message.

    - ``users``: by 18-character crm id, for every user id in the message.
    - ``username_owners``: casefolded username -> 18-character crm id of the provisioned
      agent holding it, for every username the message's notifications would map to.
    - ``processed_ids``: 18-character notification ids already applied in this org.
    """

    users: Mapping[str, StoredUser]
    username_owners: Mapping[str, str]
    processed_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision for one notification, in document order.

    - ``index``: position of the notification in the message (0-based).
    - ``notification_id``: canonical 18-character id, or ``None`` if it had none / invalid.
    - ``crm_id``: canonical 18-character User id, or ``None`` if it could not be read.
    - ``action`` and ``reason`` (one human sentence, never a secret).
    - ``stamp``: the ordering stamp used (SystemModstamp, else LastModifiedDate), or None.
    - ``agent``: the mapped agent for created/updated/restored, else ``None``.
    - ``mark_processed``: whether ``notification_id`` is to be remembered as applied.
    """

    index: int
    notification_id: str | None
    crm_id: str | None
    action: Action
    reason: str
    stamp: datetime | None
    agent: AgentRecord | None
    mark_processed: bool
