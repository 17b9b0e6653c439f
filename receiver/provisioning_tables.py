"""The store's tables of the decision core (registered on the same ``SQLModel.metadata``
as ``receiver.models``; migration ``0009_parking_replay``)::

    parked_change        id PK; organization_id, crm_id, username_key (the casefolded
                         username it claims), holder_crm_id (who held it), system_modstamp,
                         data (the mapped agent JSON), notification_id, parked_at;
                         indexes (organization_id, crm_id), (organization_id, username_key)
    failed_notification  event_id PK (the provisioning_event of the failure);
                         organization_id, notification_id, sobject_type, record_id, fields
                         (the notification's fields by API name, text as sent), stored_at

A parked change is a user's change that failed on a username collision (CONTRACT section
2): it is decided again when the holder releases that username. A failed notification is
what the dashboard's Replay needs to decide it again (``receiver.replay``); neither table
holds a SessionId (it is message-level, never a notification field) or a token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from receiver.models import UTCDateTime, organization_column
from sf_metadata.effects import ParkedChange
from sf_metadata.mapping import AgentRecord

__all__ = ["FailedNotification", "ParkedChangeRow"]


class ParkedChangeRow(SQLModel, table=True):
    """A change parked on a username collision (see the module docstring)."""

    __tablename__ = "parked_change"
    __table_args__ = (
        sa.Index("ix_parked_change_organization_id_crm_id", "organization_id", "crm_id"),
        sa.Index(
            "ix_parked_change_organization_id_username_key", "organization_id", "username_key"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(sa_column=organization_column())
    crm_id: str = Field(max_length=18)
    username_key: str = Field(max_length=320)
    holder_crm_id: str = Field(max_length=18)
    system_modstamp: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    data: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    notification_id: str | None = Field(default=None, max_length=18)
    parked_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))

    def to_change(self) -> ParkedChange:
        """The parked change as the decision core reads it (``sf_metadata.effects``).
        Raises ``ValueError`` for a row not read from the store (no id yet)."""
        if self.id is None:
            raise ValueError("a parked change without an id")
        return ParkedChange(
            id=self.id,
            crm_id=self.crm_id,
            username_key=self.username_key,
            record=AgentRecord.from_json(self.data),
            system_modstamp=self.system_modstamp,
            notification_id=self.notification_id,
        )


class FailedNotification(SQLModel, table=True):
    """What a failed notification carried, for its replay (see the module docstring)."""

    __tablename__ = "failed_notification"
    __table_args__ = (sa.Index("ix_failed_notification_organization_id", "organization_id"),)

    event_id: int = Field(
        sa_column=sa.Column(
            sa.Integer(),
            sa.ForeignKey("provisioning_event.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        )
    )
    organization_id: str = Field(sa_column=organization_column())
    notification_id: str | None = Field(default=None, max_length=64)
    sobject_type: str | None = Field(default=None, max_length=80)
    record_id: str | None = Field(default=None, max_length=64)
    fields: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    stored_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
