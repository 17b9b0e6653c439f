"""The Users page's reads: the organization's agents in name order, searched and paged
through the index ``ix_agent_directory_name`` (organization_id, lower(name), crm_id).

Paging is by keyset (the last row's (name key, crmId)), so page N costs what page 1
costs, at any number of agents. Search (``?q=``) is a case-insensitive substring of the
name or the username, read through a trigram index (migration ``0010_dashboard_search``):

- **SQLite** (3.34 or later): the FTS5 table ``agent_search`` (``trigram`` tokenizer) over
  the document table ``agent_search_doc``, which the writer of agents keeps in step with
  ``agent`` (``receiver.agent_search``; deletes by triggers). A
  query of 3 characters or more is an FTS5 phrase (a phrase of trigrams is a substring;
  FTS5 folds the case of every letter); its matches are sorted by the page's key and the
  page's agents read by id, so the cost grows with the number of matches, not of agents;
  an ASCII query with :data:`DENSE` matches or more (counted up to there) walks the name
  order instead, as below, since a page of matches then comes at once.
  A query of 1 or 2 characters (shorter than a trigram) walks the covering index
  ``ix_agent_search_doc_order`` in page order with ``LIKE`` (``%``, ``_`` and ``\\``
  escaped; each non-ASCII letter tried in both cases, see :func:`name_spellings`, since
  SQLite folds ASCII only): it stops after a page of matches and, for a rare pair of
  letters, reads the organization's index entries once without touching agent rows.
- **PostgreSQL**: GIN ``pg_trgm`` indexes on the name key and ``username_key``; the
  ``LIKE '%q%'`` filters below use them (the planner picks them for rare terms and walks
  the name index for common ones). For 1 or 2 characters pg_trgm cannot help; the walk
  stops after a page of matches.
- Without the index (an SQLite older than 3.34, or ``pg_trgm`` not installable), ``LIKE``
  walks the name index as above.

``bench/dashboard_pages.py`` measures each case at 100,000 agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.dashboard.search_text import (
    MAX_QUERY,
    TRIGRAM,
    clean_query,
    decode_cursor,
    encode_cursor,
    escape_like,
    fts_query,
    name_spellings,
)
from receiver.models import Agent

__all__ = [
    "MAX_QUERY",
    "PAGE_SIZE",
    "TRIGRAM",
    "clean_query",
    "AgentRow",
    "DirectoryPage",
    "count_agents",
    "decode_cursor",
    "encode_cursor",
    "fts_query",
    "list_page",
    "name_spellings",
]

PAGE_SIZE = 100


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


def _substring_of_name_or_username(
    name_key: sa.ColumnElement[str], username_key: sa.ColumnElement[str], query: str
) -> sa.ColumnElement[bool]:
    """``query`` is a substring of the name (any spelling, see :func:`name_spellings`) or
    of the casefolded username; ``%``, ``_`` and ``\\`` match themselves."""
    names = [
        name_key.like(f"%{escape_like(spelling)}%", escape="\\")
        for spelling in name_spellings(query)
    ]
    return sa.or_(*names, username_key.like(f"%{escape_like(query.casefold())}%", escape="\\"))


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


_DOC = sa.table(
    "agent_search_doc",
    sa.column("id", sa.Integer()),
    sa.column("agent_id", sa.String()),
    sa.column("organization_id", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("crm_id", sa.String()),
    sa.column("username", sa.String()),
)


def _has_search_index(session: Session) -> bool:
    """True when the store has the SQLite FTS5 search tables (migration 0010 creates them
    where the SQLite build has the trigram tokenizer)."""
    found = session.execute(
        sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_search'")
    ).first()
    return found is not None


#: From this many FTS5 matches (any organization) an ASCII query walks the name order.
DENSE = 2000


def _dense(session: Session, query: str) -> bool:
    """True when ``query`` has at least :data:`DENSE` FTS5 matches (counting stops
    there, so this costs at most that many doclist entries). Sorting every match of a
    term most agents share (``acme``) costs more than walking the name order, where a
    page of matches comes at once; for an ASCII query the walk's ``LIKE`` (ASCII case
    folding) finds what the FTS5 phrase finds, except names whose match needs a non-ASCII
    letter folded to an ASCII one (the Kelvin sign, a long s)."""
    found = session.execute(
        sa.text(
            "SELECT count(*) FROM (SELECT rowid FROM agent_search "
            "WHERE agent_search MATCH :fts LIMIT :cap)"
        ),
        {"fts": fts_query(query), "cap": DENSE},
    ).scalar_one()
    return int(found) >= DENSE


def _sqlite_search_keys(
    session: Session,
    *,
    organization_id: str,
    query: str,
    cursor: tuple[str, str] | None,
    backwards: bool,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(agent id, name key, crmId) of up to ``limit`` matches in page order, from the
    SQLite search tables (see the module docstring)."""
    direction = "DESC" if backwards else "ASC"
    trigrams = len(query) >= TRIGRAM and len(query.casefold()) >= TRIGRAM
    if trigrams and query.isascii() and _dense(session, query):
        trigrams = False  # many matches: walking the name order finds a page at once
    if trigrams:
        # CROSS JOIN keeps the FTS5 matches the outer loop (SQLite never reorders it), so
        # the cost follows the matches. Left to itself, with ANALYZE statistics, the
        # planner walks the page-order index and probes the match list: every agent.
        params: dict[str, object] = {
            "fts": fts_query(query),
            "org": organization_id,
            "limit": limit,
        }
        after = ""
        if cursor is not None:
            after = f" AND (d.name_key, d.crm_id) {'<' if backwards else '>'} (:key, :crm)"
            params.update(key=cursor[0], crm=cursor[1])
        found = session.execute(
            sa.text(
                "SELECT d.agent_id, d.name_key, d.crm_id FROM "
                "(SELECT rowid AS id FROM agent_search WHERE agent_search MATCH :fts) AS m "
                "CROSS JOIN agent_search_doc AS d ON d.id = m.id "
                f"WHERE d.organization_id = :org{after} "
                f"ORDER BY d.name_key {direction}, d.crm_id {direction} LIMIT :limit"
            ),
            params,
        )
        return [(r[0], r[1], r[2]) for r in found]
    stmt = (
        sa.select(_DOC.c.agent_id, _DOC.c.name_key, _DOC.c.crm_id)
        .where(_DOC.c.organization_id == organization_id)
        .where(_substring_of_name_or_username(_DOC.c.name_key, _DOC.c.username, query))
    )
    if cursor is not None:
        key = sa.tuple_(_DOC.c.name_key, _DOC.c.crm_id)
        stmt = stmt.where(key < sa.tuple_(*cursor) if backwards else key > sa.tuple_(*cursor))
    if backwards:
        stmt = stmt.order_by(_DOC.c.name_key.desc(), _DOC.c.crm_id.desc())
    else:
        stmt = stmt.order_by(_DOC.c.name_key, _DOC.c.crm_id)
    return [(r[0], r[1], r[2]) for r in session.execute(stmt.limit(limit))]


def _sqlite_search_rows(
    session: Session,
    *,
    organization_id: str,
    query: str,
    cursor: tuple[str, str] | None,
    backwards: bool,
    limit: int,
) -> list[AgentRow]:
    keys = _sqlite_search_keys(
        session,
        organization_id=organization_id,
        query=query,
        cursor=cursor,
        backwards=backwards,
        limit=limit,
    )
    if not keys:
        return []
    table = Agent.__table__  # type: ignore[attr-defined]
    stmt = sa.select(
        table.c.id,
        table.c.crm_id,
        table.c.username,
        table.c.data,
        table.c.updated_at,
        name_key_sql("sqlite").label("name_key"),
    ).where(table.c.id.in_([k[0] for k in keys]))
    found = {r.id: _row(r) for r in session.execute(stmt)}
    return [found[k[0]] for k in keys if k[0] in found]


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
    q = clean_query(query)
    backwards = before is not None and after is None
    cursor = before if backwards else after
    if q and dialect == "sqlite" and _has_search_index(session):
        rows = _sqlite_search_rows(
            session,
            organization_id=organization_id,
            query=q,
            cursor=cursor,
            backwards=backwards,
            limit=page_size + 1,
        )
    else:
        rows = _walk_rows(
            session,
            dialect=dialect,
            organization_id=organization_id,
            query=q,
            cursor=cursor,
            backwards=backwards,
            limit=page_size + 1,
        )
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


def _walk_rows(
    session: Session,
    *,
    dialect: str,
    organization_id: str,
    query: str,
    cursor: tuple[str, str] | None,
    backwards: bool,
    limit: int,
) -> list[AgentRow]:
    """Up to ``limit`` agents in page order from the agent table (the name index; on
    PostgreSQL the trigram indexes serve the ``LIKE`` filters)."""
    name_key = name_key_sql(dialect)
    table = Agent.__table__  # type: ignore[attr-defined]
    stmt = sa.select(
        table.c.crm_id,
        table.c.username,
        table.c.data,
        table.c.updated_at,
        name_key.label("name_key"),
    ).where(table.c.organization_id == organization_id)
    if query:
        stmt = stmt.where(_substring_of_name_or_username(name_key, table.c.username_key, query))
    if cursor is not None:
        key = sa.tuple_(name_key, table.c.crm_id)
        stmt = stmt.where(key < sa.tuple_(*cursor) if backwards else key > sa.tuple_(*cursor))
    if backwards:
        stmt = stmt.order_by(name_key.desc(), table.c.crm_id.desc())
    else:
        stmt = stmt.order_by(name_key, table.c.crm_id)
    return [_row(r) for r in session.execute(stmt.limit(limit))]


def count_before(session: Session, *, organization_id: str, key: tuple[str, str]) -> int:
    """How many of the organization's agents come before ``key`` (name key, crmId) in
    name order: where a page of the unfiltered list starts (a count over the name index)."""
    name_key = name_key_sql(session.get_bind().dialect.name)
    table = Agent.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.organization_id == organization_id)
        .where(sa.tuple_(name_key, table.c.crm_id) < sa.tuple_(*key))
    )
    return int(session.execute(stmt).scalar_one())


def count_agents(session: Session, *, organization_id: str) -> int:
    """How many agents the organization has (an index count)."""
    table = Agent.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.organization_id == organization_id)
    )
    return int(session.execute(stmt).scalar_one())
