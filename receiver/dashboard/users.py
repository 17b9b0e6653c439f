"""The Users page (``/organizations/{organization}/users``) and one agent's page
(``/organizations/{organization}/users/{crmId}``), CONTRACT section 5.

The agent page shows the agent's fields as the mapping gives them (CONTRACT section 2),
its sessions, and its timeline: every provisioning log event about that Salesforce user,
newest first, with the message's time and outcome, the action and the reason ("why is
this agent disabled?"). A deprovisioned user has no agent any more; its page shows the
tombstone and the same timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.responses import Response

from receiver.dashboard.directory import (
    MAX_QUERY,
    TRIGRAM,
    DirectoryPage,
    clean_query,
    count_agents,
    count_before,
    decode_cursor,
    list_page,
)
from receiver.dashboard.framework import OrgPage, org_route, redirect, vouched
from receiver.dashboard.log import carried_name
from receiver.dashboard.logview import SOURCE_LABELS
from receiver.dashboard.sync_user import sync_problem, synced_row
from receiver.models import Agent, AgentSession, ProvisioningEvent, ProvisioningMessage, Tombstone
from receiver.provisioning_tables import FailedNotification
from sf_metadata.mapping import field_label

__all__ = ["ROUTES", "TimelineEntry", "agent_timeline"]

TIMELINE_LIMIT = 200
SESSIONS_LIMIT = 50


async def users_page(page: OrgPage) -> Response:
    """The agent table, search and paging."""
    raw_q = page.request.query_params.get("q", "").replace("\x00", "")
    cut = len(raw_q.strip()) > MAX_QUERY
    q = clean_query(raw_q)
    after = decode_cursor(page.request.query_params.get("after"))
    before = decode_cursor(page.request.query_params.get("before"))
    org_id = page.organization.id

    def work(session: Session) -> tuple[DirectoryPage, int, int | None]:
        listing = list_page(session, organization_id=org_id, query=q, after=after, before=before)
        start = None
        if listing.rows and not q:  # "101-200 of 285" (a search is counted by its page)
            first = listing.rows[0]
            key = (first.name_key, first.crm_id)
            start = count_before(session, organization_id=org_id, key=key) + 1
        return listing, count_agents(session, organization_id=org_id), start

    listing, total, start = await page.read(work)
    return page.render(
        "users.html.j2",
        {
            "listing": listing,
            "q": q,
            "cut": cut,
            "max_query": MAX_QUERY,
            "total": total,
            "start": start,
            "short": 0 < len(q) < TRIGRAM,
            "trigram": TRIGRAM,
        },
        nav="users",
    )


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One decision about a Salesforce user (from the provisioning log); ``source`` is its
    message's (``receiver.provisioning.SourceKind``: an Outbound Message, a reconcile
    plan named by ``source_ref``, a replay)."""

    message_id: int
    received_at: datetime
    outcome: str
    notification_id: str | None
    action: str
    reason: str
    event_id: int
    source: str = "outbound-message"
    source_ref: str | None = None


def agent_timeline(
    session: Session, *, organization_id: str, crm_id: str, limit: int = TIMELINE_LIMIT
) -> list[TimelineEntry]:
    """Every logged decision about ``crm_id`` (18-character) in the organization, newest
    first, at most ``limit`` (index ``ix_provisioning_event_crm_id``)."""
    e = ProvisioningEvent.__table__  # type: ignore[attr-defined]
    m = ProvisioningMessage.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(
            m.c.id,
            m.c.received_at,
            m.c.outcome,
            e.c.notification_id,
            e.c.action,
            e.c.reason,
            e.c.id,
            m.c.source,
            m.c.source_ref,
        )
        .select_from(e.join(m, m.c.id == e.c.message_id))
        .where(e.c.crm_id == crm_id, m.c.organization_id == organization_id)
        .order_by(e.c.message_id.desc(), e.c.position.desc())
        .limit(limit)
    )
    return [TimelineEntry(*row) for row in session.execute(stmt)]


@dataclass(frozen=True, slots=True)
class FieldRow:
    """One row of the agent page's Fields table: ``label`` for a person, ``path`` the
    agent JSON path (CONTRACT section 2), ``source`` the Salesforce User field(s) it comes
    from (``None`` for a custom field, whose label is its API name), ``value`` already
    worded for the page (``None`` shows as empty)."""

    label: str
    path: str
    source: str | None
    value: Any


#: (JSON key, Salesforce User field) of the top-level agent fields, CONTRACT section 2;
#: their labels are ``sf_metadata.mapping.AGENT_FIELD_LABELS`` (the log's reasons too).
_TOP_FIELDS = (
    ("username", "Username, else Email"),
    ("crmId", "Id"),
    ("crmUser", "Username"),
    ("name", "Name"),
    ("pictureUrl", "SmallPhotoUrl"),
)

#: The same for the ``crm`` object.
_CRM_FIELDS = (
    ("callCenterId", "CallCenterId"),
    ("email", "Email"),
    ("language", "LanguageLocaleKey"),
    ("profileId", "ProfileId"),
    ("userRoleId", "UserRoleId"),
    ("userType", "UserType"),
)


def _fields(data: dict[str, Any]) -> list[FieldRow]:
    """The agent JSON as labelled rows in CONTRACT order; ``disabled`` and
    ``inboundEnabled`` read as the Users page's Status (Enabled/Disabled) and Inbound
    (Yes/No); custom fields keep their API name as label."""
    out = [FieldRow(field_label(key), key, source, data.get(key)) for key, source in _TOP_FIELDS]
    for key, true, false in (("disabled", "Disabled", "Enabled"), ("inboundEnabled", "Yes", "No")):
        out.append(
            FieldRow(
                field_label(key), key, "IsActive, CallCenterId", true if data.get(key) else false
            )
        )
    phones = data.get("phoneNumbers") or []
    out.append(
        FieldRow(
            field_label("phoneNumbers"),
            "phoneNumbers",
            "MobilePhone, Phone",
            ", ".join(f"{p.get('type')}: {p.get('number')}" for p in phones) or None,
        )
    )
    crm = data.get("crm") or {}
    for key, source in _CRM_FIELDS:
        out.append(FieldRow(field_label(f"crm.{key}"), f"crm.{key}", source, crm.get(key)))
    for key, value in sorted((crm.get("customFields") or {}).items()):
        path = f"crm.customFields.{key}"
        out.append(FieldRow(field_label(path), path, None, value))
    return out


async def agent_page(page: OrgPage) -> Response:
    """One agent: fields, sessions, timeline, and ``Sync now`` (``receiver.dashboard.sync_user``:
    its result when the page is that POST's redirect)."""
    crm_id = page.user_id()
    if isinstance(crm_id, Response):
        return crm_id
    org_id = page.organization.id
    synced = vouched(page.request).get("synced")
    sync_job = vouched(page.request).get("sync_job")

    def work(session: Session) -> dict[str, Any]:
        from receiver.salesforce_connection import connection_info

        agent = session.exec(
            select(Agent).where(Agent.organization_id == org_id, Agent.crm_id == crm_id)
        ).first()
        tombstone = session.get(Tombstone, (org_id, crm_id))
        sessions = list(
            session.exec(
                select(AgentSession)
                .where(AgentSession.organization_id == org_id, AgentSession.crm_id == crm_id)
                .order_by(col(AgentSession.started_at).desc())
                .limit(SESSIONS_LIMIT)
            ).all()
        )
        timeline = agent_timeline(session, organization_id=org_id, crm_id=crm_id)
        return {
            "agent": agent,
            "tombstone": tombstone,
            "sessions": sessions,
            "timeline": timeline,
            "connected": connection_info(session, org_id) is not None,
            "synced": synced_row(session, org_id, synced, crm_id) if synced else None,
            "flash_why": sync_problem(session, org_id, sync_job) if sync_job else None,
            "kept_name": None
            if agent is not None
            else (tombstone.name if tombstone is not None and tombstone.name else None)
            or _kept_name(session, org_id, timeline),
        }

    values = await page.read(work)
    nothing = values["agent"] is None and values["tombstone"] is None and not values["timeline"]
    if nothing and values["synced"] is None:  # a Sync now's answer is shown even so
        return page.error(
            404,
            "User not found",
            f"No agent and no provisioning record for Salesforce user {crm_id} in this "
            "organization.",
            hint="Open the agent from the Users page, or check the Salesforce user id. A "
            "Salesforce user who was never provisioned has no page yet: Sync user on the "
            "Reconcile page reads them from Salesforce.",
        )
    agent = values["agent"]
    values["crm_id"] = crm_id
    values["sources"] = SOURCE_LABELS
    values["fields"] = _fields(agent.data) if agent is not None else []
    values["why"] = _why(agent.data if agent is not None else None, values["timeline"])
    # a user without an agent whose change failed: a link to its failures, to replay them
    values["failures_link"] = agent is None and any(
        t.action == "failed" for t in values["timeline"]
    )
    return page.render("agent.html.j2", values, nav="users")


def _kept_name(session: Session, org_id: str, timeline: list[TimelineEntry]) -> str | None:
    """For a user with no agent: the ``Name`` its newest failed notification carried (kept
    for replay in ``failed_notification``), or ``None``."""
    failed = next((t for t in timeline if t.action == "failed"), None)
    if failed is None:
        return None
    kept = session.get(FailedNotification, failed.event_id)
    return carried_name(kept.fields) if kept is not None else None


def _why(data: dict[str, Any] | None, timeline: list[TimelineEntry]) -> str | None:
    """A sentence answering "why is this agent disabled (or gone, or not there)?": for a
    user with no agent, the newest of its deprovisioning and its failures decides."""
    if data is None:
        last = next((t for t in timeline if t.action in ("deprovisioned", "failed")), None)
        if last is not None and last.action == "deprovisioned":
            return f"Deprovisioned: {last.reason}"
        if last is not None:
            return (
                f"Not provisioned: its last change failed ({last.reason}). Once the cause is "
                "fixed, replay it from the Provisioning log."
            )
        return "This Salesforce user has no agent."
    if not data.get("disabled"):
        return None
    crm = data.get("crm") or {}
    if not crm.get("callCenterId"):
        return "Disabled because the Salesforce user has no call center (CallCenterId is empty)."
    return "Disabled because the Salesforce user is not active."


async def organization_home(page: OrgPage) -> Response:
    """``/organizations/{organization}`` (a trimmed address): its Users page."""
    return redirect(page.url("/users"))


ROUTES = [
    org_route("", organization_home),
    org_route("/users", users_page),
    org_route("/users/{crm_id}", agent_page),
]
