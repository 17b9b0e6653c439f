"""What a decision writes: the effect types a :class:`~sf_metadata.decision.Decision`
carries (pure values, no I/O). The store writes exactly these and decides nothing.

- :class:`UpsertAgent`: insert (created, restored) or update the agent row of a user, with
  its id, username, stamp and agent JSON.
- :class:`WriteTombstone`: insert or update the user's tombstone; with ``delete_agent`` the
  agent row goes too (a deprovision).
- :class:`EndSessions`: end every active session of an agent (deprovisioned, or become
  disabled), in the same transaction.
- :class:`ParkChange`: keep a change that failed on a username collision, to decide it
  again when the holder releases that username (:class:`ParkedChange` is such a change
  as stored).

Every effect is keyed by the decision's ``crm_id`` (18-character User id).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sf_metadata.mapping import AgentRecord, username_key

__all__ = [
    "EndReason",
    "EndSessions",
    "ParkChange",
    "ParkedChange",
    "UpsertAgent",
    "WriteTombstone",
]


class EndReason(enum.StrEnum):
    """Why sessions end; the values are ``agent_session.end_reason`` words."""

    DEPROVISIONED = "deprovisioned"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpsertAgent:
    """Write the agent row.

    - ``agent_id``: our internal id (32 hex characters): the stored agent's, a tombstone's
      (a restore keeps the same id), or a new one.
    - ``record``: the mapped agent; ``data`` is its JSON (CONTRACT section 2).
    - ``system_modstamp``: the stamp to store (the change's, or the stored one when the
      change has none), aware UTC or ``None``.
    - ``insert``: True when no agent row exists (created, restored), else an update.
    - ``drop_tombstone``: the user's tombstone row exists and is deleted.
    - ``released_key``: the casefolded username the stored agent held and no longer
      holds (a rename), else ``None``.
    - ``data_changed``: the agent JSON differs from the stored one (always True for an
      insert); False means only the stamp moves.
    - ``record_json``: ``record.to_json()`` when the decision already built it (then
      ``data`` is that dict, not built again; never changed by its readers).
    """

    agent_id: str
    record: AgentRecord
    system_modstamp: datetime | None
    insert: bool
    drop_tombstone: bool
    released_key: str | None
    data_changed: bool
    record_json: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: ``username_key(record.username)`` when the decision computed it; not compared.
    key: str | None = field(default=None, compare=False, repr=False)

    @property
    def username(self) -> str | None:
        return self.record.username

    @property
    def username_key(self) -> str | None:
        if self.key is not None:
            return self.key
        return username_key(self.record.username)

    @property
    def data(self) -> dict[str, Any]:
        return self.record_json if self.record_json is not None else self.record.to_json()


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteTombstone:
    """Write the user's tombstone row.

    - ``agent_id``: our id of the agent it stands for (``None`` when the user was never
      provisioned), so a later restore gets the same id.
    - ``system_modstamp``: the stamp to keep (never lowered), aware UTC or ``None``.
    - ``insert``: True when no tombstone row exists yet, else an update.
    - ``deprovisioned``: set ``deprovisioned_at`` to the transaction's ``now`` (a
      deprovision, or a new tombstone); False keeps the stored instant (only the stamp
      advances).
    - ``delete_agent``: the agent row is deleted (a deprovision).
    - ``released_key``: the casefolded username the deleted agent held, else ``None``.
    - ``name``: the user's ``Name`` as the change carried it (kept so the pages can say who
      a deprovisioned user was), ``None`` when it carried none.
    """

    agent_id: str | None
    system_modstamp: datetime | None
    insert: bool
    deprovisioned: bool
    delete_agent: bool
    released_key: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndSessions:
    """End every active session of agent ``agent_id`` with ``reason``."""

    agent_id: str
    reason: EndReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ParkChange:
    """Keep the change of a decision that failed on a username collision.

    ``username_key`` is the casefolded username it claims, ``holder_crm_id`` the user who
    held it; ``record``, ``system_modstamp`` and ``notification_id`` are the change's.
    """

    username_key: str
    holder_crm_id: str
    record: AgentRecord
    system_modstamp: datetime | None
    notification_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParkedChange:
    """A parked change as the store holds it (``id`` is the store's row id); always an
    active user's change (only those collide)."""

    id: int
    crm_id: str
    username_key: str
    record: AgentRecord
    system_modstamp: datetime | None
    notification_id: str | None
