"""The Users page's reads: the organization's agents in name order, searched and paged
through the index ``ix_agent_directory_name`` (organization_id, lower(name), crm_id).

Paging is by keyset (the last row's (name key, crmId)), so page N costs what page 1
costs, at any number of agents. Search (``?q=``) is a case-insensitive substring of the
name or the username (SQL ``LIKE '%q%'`` with ``%``, ``_`` and ``\\`` escaped): it walks
the same index in name order and stops after a page of matches, so a common term answers
at once and a term that matches nothing reads the organization's index entries once
(``bench/dashboard_pages.py`` measures both at 100,000 agents). On SQLite, ``lower`` folds
ASCII letters only, so non-ASCII letters match case-sensitively there; PostgreSQL folds
every letter.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.models import Agent

__all__ = [
    "MAX_QUERY",
    "PAGE_SIZE",
    "AgentRow",
    "DirectoryPage",
    "count_agents",
    "decode_cursor",
    "encode_cursor",
    "list_page",
]

PAGE_SIZE = 100
#: Longer search strings are cut (the page says so).
MAX_QUERY = 200


def name_key_sql(dialect: str) -> sa.ColumnElement[str]:
    """The indexed expression (literal SQL, so the planner matches the index)."""
    if dialect == "postgresql":
        return sa.literal_column("coalesce(lower(agent.data ->> 'name'), '')")
    return sa.literal_column("coalesce(lower(json_extract(agent.data, '$.name')), '')")


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One row of the Users page."""

    crm_id: str
    name: str | None
    username: str | None
    disabled: bool
    inbound: bool
    call_center_id: str | None
    updated_at: datetime
    name_key: str


@dataclass(frozen=True, slots=True)
class DirectoryPage:
    """``rows`` in name order; ``next_cursor``/``previous_cursor`` for the links (``None``
    when there is no such page)."""

    rows: list[AgentRow]
    next_cursor: str | None
    previous_cursor: str | None


def encode_cursor(name_key: str, crm_id: str) -> str:
    """An opaque URL-safe cursor for a row."""
    raw = json.dumps([name_key, crm_id], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(value: str | None) -> tuple[str, str] | None:
    """The (name key, crmId) of a cursor, or ``None`` for a missing or malformed one."""
    if not value or len(value) > 2000:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        isinstance(data, list)
        and len(data) == 2
        and all(isinstance(x, str) for x in data)
        and len(data[1]) <= 18
    ):
        return data[0], data[1]
    return None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row(values: Any) -> AgentRow:
    data = values.data or {}
    crm = data.get("crm") or {}
    return AgentRow(
        crm_id=values.crm_id,
        name=data.get("name"),
        username=values.username,
        disabled=bool(data.get("disabled")),
        inbound=bool(data.get("inboundEnabled")),
        call_center_id=crm.get("callCenterId"),
        updated_at=values.updated_at,
        name_key=values.name_key,
    )


def list_page(
    session: Session,
    *,
    organization_id: str,
    query: str = "",
    after: tuple[str, str] | None = None,
    before: tuple[str, str] | None = None,
    page_size: int = PAGE_SIZE,
) -> DirectoryPage:
    """A page of at most ``page_size`` agents in name order (then crmId), after the
    cursor ``after`` or before the cursor ``before`` (Previous), matching ``query``."""
    dialect = session.get_bind().dialect.name
    name_key = name_key_sql(dialect)
    table = Agent.__table__  # type: ignore[attr-defined]
    stmt = sa.select(
        table.c.crm_id,
        table.c.username,
        table.c.data,
        table.c.updated_at,
        name_key.label("name_key"),
    ).where(table.c.organization_id == organization_id)
    q = query.strip()[:MAX_QUERY]
    if q:
        stmt = stmt.where(
            sa.or_(
                name_key.like(f"%{_escape_like(q.lower())}%", escape="\\"),
                table.c.username_key.like(f"%{_escape_like(q.casefold())}%", escape="\\"),
            )
        )
    backwards = before is not None and after is None
    cursor = before if backwards else after
    if cursor is not None:
        key = sa.tuple_(name_key, table.c.crm_id)
        stmt = stmt.where(key < sa.tuple_(*cursor) if backwards else key > sa.tuple_(*cursor))
    if backwards:
        stmt = stmt.order_by(name_key.desc(), table.c.crm_id.desc())
    else:
        stmt = stmt.order_by(name_key, table.c.crm_id)
    rows = [_row(r) for r in session.execute(stmt.limit(page_size + 1))]
    more = len(rows) > page_size
    rows = rows[:page_size]
    if backwards:
        rows.reverse()
    if not rows:
        return DirectoryPage([], None, None)
    first, last = rows[0], rows[-1]
    has_next = more if not backwards else True
    has_previous = (more if backwards else cursor is not None) and bool(rows)
    return DirectoryPage(
        rows,
        encode_cursor(last.name_key, last.crm_id) if has_next else None,
        encode_cursor(first.name_key, first.crm_id) if has_previous else None,
    )


def count_agents(session: Session, *, organization_id: str) -> int:
    """How many agents the organization has (an index count)."""
    table = Agent.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.organization_id == organization_id)
    )
    return int(session.execute(stmt).scalar_one())
