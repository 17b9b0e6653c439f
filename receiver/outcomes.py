"""What became of one Outbound Message, as the provisioning log records it (a leaf module:
the store's tables, the webhook, the apply path and the dashboard share it).

A ``StrEnum``: each member is stored, printed and put in JSON as its value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MessageOutcome"]


class MessageOutcome(StrEnum):
    """One message's outcome.

    - ``PROCESSED``: its notifications were applied (each has its own action);
    - ``IGNORED``: the feature is disabled for the organization (acknowledged, nothing
      applied);
    - ``EMPTY``: the message held no notifications;
    - ``REJECTED``: refused after the token check (body too large, not an Outbound
      Message, another Salesforce org); the detail says why.
    """

    PROCESSED = "processed"
    IGNORED = "ignored"
    EMPTY = "empty"
    REJECTED = "rejected"
