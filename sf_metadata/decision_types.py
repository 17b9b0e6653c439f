"""The types of the provisioning decision (a leaf module, no I/O): what a decision reads
(:class:`StoredUser`, :class:`StoredState`, :class:`PendingChange`) and what it gives
(:class:`Action`, :class:`Decision` with its effect from ``sf_metadata.effects``).

``sf_metadata.decision`` decides; everyone imports these names from there.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sf_metadata.effects import EndSessions, ParkChange, ParkedChange, UpsertAgent, WriteTombstone
from sf_metadata.mapping import AgentRecord

__all__ = ["Action", "Decision", "PendingChange", "StoredState", "StoredUser"]


class Action(enum.StrEnum):
    """What one change did. The values are the provisioning log's words."""

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
    ``data`` is the stored agent JSON (``None`` for a tombstone, or when not loaded: then
    an update is always written). ``has_tombstone``: a tombstone row exists (``None``
    means "exactly when not provisioned").
    """

    crm_id: str
    agent_id: str | None
    provisioned: bool
    system_modstamp: datetime | None
    username: str | None
    data: Mapping[str, Any] | None = None
    has_tombstone: bool | None = None

    @property
    def tombstoned(self) -> bool:
        return not self.provisioned if self.has_tombstone is None else self.has_tombstone


@dataclass(frozen=True, slots=True)
class StoredState:
    """Snapshot of the store for one batch of changes.

    - ``users``: by 18-character crm id, for every user of the batch that has stored state.
    - ``username_owners``: casefolded username -> 18-character crm id of the provisioned
      agent holding it, for every username the batch's changes would map to.
    - ``processed_ids``: 18-character notification ids already applied in this org.
    - ``organization_id``: ours (it seeds the ids of new agents).
    - ``parked``: by crm id, the parked changes of the batch's users.
    """

    users: Mapping[str, StoredUser]
    username_owners: Mapping[str, str]
    processed_ids: frozenset[str]
    organization_id: str = ""
    parked: Mapping[str, tuple[ParkedChange, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The decision for one change, with its effect.

    - ``index``: position of the change in its source (0-based; a notification's place in
      the message, a queried User's place in the read).
    - ``notification_id``: canonical 18-character id, or ``None`` (none, invalid, or a
      queried User).
    - ``crm_id``: canonical 18-character User id, or ``None`` if it could not be read.
    - ``action`` and ``reason`` (one human sentence, never a secret).
    - ``stamp``: the ordering stamp used (SystemModstamp, else LastModifiedDate), or None.
    - ``agent``: the mapped agent for created/updated/restored, else ``None``.
    - ``mark_processed``: whether ``notification_id`` is to be remembered as applied.
    - ``effect``: the row to write (:class:`~sf_metadata.effects.UpsertAgent`,
      :class:`~sf_metadata.effects.WriteTombstone`) or ``None`` (nothing to write).
    - ``end_sessions``: the agent whose sessions end, or ``None``.
    - ``park``: the change to park (a username collision), or ``None``.
    - ``unpark``: ids of parked changes of this user to forget (superseded or decided).
    """

    index: int
    notification_id: str | None
    crm_id: str | None
    action: Action
    reason: str
    stamp: datetime | None = None
    agent: AgentRecord | None = None
    mark_processed: bool = False
    effect: UpsertAgent | WriteTombstone | None = None
    end_sessions: EndSessions | None = None
    park: ParkChange | None = None
    unpark: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingChange:
    """One readable change of one user, to decide, from any source.

    ``index`` orders ties and places the decision; ``notification_id`` is ``None`` for a
    queried User; ``agent``/``stamp``/``active`` as in :class:`UserChange`;
    ``parked_id`` is set when this is a parked change decided again.
    """

    index: int
    notification_id: str | None
    agent: AgentRecord
    stamp: datetime | None
    active: bool
    parked_id: int | None = None

    @property
    def crm_id(self) -> str:
        return self.agent.crm_id
