"""Webhook requests refused at the token check (401: the token is missing or wrong).

Such a request never reaches the provisioning log: anyone can send one, and logging each
would let a stranger fill the log. Yet a wrong token is the commonest reason Salesforce's
messages stop landing (the token was rotated, ``org rotate-token``, and the Outbound
Message's endpoint still holds the old one), so the CRM page must be able to say so. One
row per organization, ``webhook_refusal`` (migration ``0010_dashboard_search``), keeps the
time and reason of the last refusal; it is written at most once per :data:`RECORD_EVERY`
per organization, so a flood of wrong-token requests costs one small write a minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from receiver.models import UTCDateTime, organization_column

__all__ = ["RECORD_EVERY", "WebhookRefusal", "last_refusal", "record_refusal", "refusal_due"]

#: The last refusal's time is kept to this precision (one write a minute at most).
RECORD_EVERY = timedelta(minutes=1)


class WebhookRefusal(SQLModel, table=True):
    """The last refused (401) webhook request of an organization. ``reason`` never holds
    the token that was sent."""

    __tablename__ = "webhook_refusal"

    organization_id: str = Field(sa_column=organization_column(primary_key=True))
    last_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    reason: str = Field(max_length=200)


def last_refusal(session: Session, organization_id: str) -> WebhookRefusal | None:
    """The organization's last recorded refusal, or ``None``."""
    return session.get(WebhookRefusal, organization_id)


def refusal_due(last: WebhookRefusal | None, now: datetime) -> bool:
    """True when a refusal at ``now`` (aware UTC) should be written (none recorded yet, or
    the last one is at least :data:`RECORD_EVERY` old)."""
    return last is None or now - last.last_at >= RECORD_EVERY


def record_refusal(session: Session, *, organization_id: str, now: datetime, reason: str) -> None:
    """Record a refusal at ``now`` (aware UTC) with ``reason`` (cut to 200 characters),
    unless one was recorded less than :data:`RECORD_EVERY` ago."""
    row = session.get(WebhookRefusal, organization_id)
    if row is None:
        session.add(
            WebhookRefusal(organization_id=organization_id, last_at=now, reason=reason[:200])
        )
    elif refusal_due(row, now):
        row.last_at = now
        row.reason = reason[:200]
        session.add(row)
