"""The home page's health of each organization, at a glance.

An operator with many organizations sees on ``GET /`` which one needs them, without
opening each: when the last Outbound Message arrived from Salesforce and how it ended,
how many failed notifications wait for a replay, and whether a reconcile plan is held
for approval, whether webhook requests were refused since the last message (a
missing or wrong token: the deployed Outbound Message carries an old one), and whether
the last Refresh Webhook (the button, ``deploy``, or the install when the feature was
enabled) failed. Each organization costs five indexed reads (the newest message from
Salesforce; the last refused request, ``receiver.webhook_refusals``; its pending
failures, as the Provisioning log's ``Replay N failed`` counts them,
``receiver.replay_batch.pending_failures``; its newest reconcile plan's status; its newest
Refresh Webhook job), never a scan of its agents or of its log.

:func:`org_glance` returns an :class:`OrgGlance`; its :attr:`~OrgGlance.attention`
lines are what the page lists under "Needs attention", each with the page that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from receiver.jobs import JobKind, JobState, latest_jobs
from receiver.models import ProvisioningMessage
from receiver.provisioning import SourceKind
from receiver.reconcile.plans import CHOSEN
from receiver.reconcile.tables import ReconcilePlanRecord
from receiver.replay_batch import ReplayScope, pending_failures
from receiver.webhook_refusals import last_refusal

__all__ = ["Attention", "OrgGlance", "org_glance"]

_M = ProvisioningMessage.__table__  # type: ignore[attr-defined]
_P = ReconcilePlanRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Attention:
    """One thing to look at: ``text`` for the page, ``path`` under the organization's
    pages (``/provisioning-log?action=failed``...) where it is fixed."""

    text: str
    path: str


@dataclass(frozen=True, slots=True)
class OrgGlance:
    """``last_message_at`` (aware UTC) and ``last_outcome`` of the newest Outbound Message
    from Salesforce (``None`` when none arrived yet); ``pending_failures``: failed
    notifications not replayed yet and not overtaken by a later change of their user;
    ``plan_status`` of the newest reconcile plan (``planned``, ``held``, ``applied``,
    ``rejected``) or ``None``; ``refused_at``: when the last webhook request was refused
    for a missing or wrong token, if that happened after the last message (else
    ``None``; the CRM page says why); ``refresh_failed``: the newest Refresh Webhook job
    failed (or its worker stopped), so Salesforce may not send messages here."""

    last_message_at: datetime | None
    last_outcome: str | None
    pending_failures: int
    plan_status: str | None
    refused_at: datetime | None = None
    refresh_failed: bool = False

    @property
    def attention(self) -> tuple[Attention, ...]:
        """What needs the operator, most urgent first; empty when nothing does."""
        lines: list[Attention] = []
        if self.plan_status == "held":
            lines.append(
                Attention("Reconcile plan held: approve or reject its deletions", "/reconcile")
            )
        if self.pending_failures:
            n = self.pending_failures
            lines.append(
                Attention(
                    f"{n:,} failed notification{'' if n == 1 else 's'} to replay",
                    "/provisioning-log?action=failed",
                )
            )
        if self.refresh_failed:
            lines.append(
                Attention("Refresh Webhook failed: see why on the CRM page", "/settings/crm")
            )
        if self.refused_at is not None:
            lines.append(
                Attention(
                    "Webhook requests refused since the last message (missing or wrong token)",
                    "/settings/crm",
                )
            )
        if self.last_outcome == "rejected":
            lines.append(Attention("Last message rejected", "/settings/crm"))
        return tuple(lines)


def org_glance(session: Session, organization_id: str) -> OrgGlance:
    """The :class:`OrgGlance` of one organization (five indexed reads)."""
    last = session.execute(
        sa.select(_M.c.received_at, _M.c.outcome)
        .where(
            _M.c.organization_id == organization_id,
            _M.c.source == SourceKind.OUTBOUND_MESSAGE.value,
        )
        .order_by(_M.c.id.desc())
        .limit(1)
    ).first()
    pending = pending_failures(session, organization_id=organization_id, scope=ReplayScope())
    plan_status = session.execute(
        sa.select(_P.c.status)
        .where(_P.c.organization_id == organization_id, _P.c.kind != CHOSEN)
        .order_by(_P.c.created_at.desc())
        .limit(1)
    ).scalar()
    refresh = latest_jobs(session, organization_id, JobKind.REFRESH_WEBHOOK, limit=1)
    refusal = last_refusal(session, organization_id)
    refused_since = refusal is not None and (last is None or refusal.last_at > last.received_at)
    return OrgGlance(
        last_message_at=last.received_at if last is not None else None,
        last_outcome=last.outcome if last is not None else None,
        pending_failures=len(pending.first) + len(pending.again),
        plan_status=plan_status,
        refused_at=refusal.last_at if refusal is not None and refused_since else None,
        refresh_failed=bool(refresh)
        and refresh[0].state in (JobState.FAILED, JobState.INTERRUPTED),
    )
