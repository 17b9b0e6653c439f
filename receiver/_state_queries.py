"""Index-backed reads of the stored state of one message (issue 11 item 1).

The agents a message names are found by crm id OR username key. Written as one ``OR``
query, both SQLite and PostgreSQL plan it as a search on ``organization_id`` alone (a scan
of every agent of the organization: 25 ms at 20,000 agents, 0.5 s at 1,000,000). Written
as a ``UNION ALL`` of two searches, each arm is served by its own unique index:
``uq_agent_organization_crm_id`` (organization_id, crm_id) and the partial
``uq_agent_organization_username_key`` (organization_id, username_key) WHERE username_key
IS NOT NULL (an ``IN`` list implies NOT NULL on both stores). The cost per message then
depends on the message, not on the store's size. ``tests/receiver/test_state_queries.py``
checks the plans with ``EXPLAIN``.

The statements are built once per dialect, with the id lists as ONE parameter each
(SQLite: a JSON array read with ``json_each``, ``key IN (SELECT value FROM json_each(?))``,
which SQLite serves from the index like a list; PostgreSQL: an array), so the statement
text does not depend on the list's length and neither SQLAlchemy nor the driver renders
or binds 100 placeholders per message (an expanding ``IN`` was rendered again at every
execution: about 1 ms of a 100-notification message's four reads). The reads go through
the session's Core connection (no ORM execution step for plain rows). On PostgreSQL the agent, tombstone and processed-id reads probe the unique
index once per listed value (``unnest`` + ``LATERAL ... LIMIT 1``): as ``key = ANY(array)``
a table without statistics (a new store, or one grown since autovacuum's last ``ANALYZE``)
was planned as a scan of the organization, 12-19 ms per message at 3,000 agents. Rows are plain Core rows (no ORM objects):
:data:`AGENT_COLUMNS`, in this order; the tombstone and processed-id reads
(``receiver._provisioning_state``) use :func:`tombstones_of` and :func:`processed_of`.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import CompoundSelect
from sqlmodel import Session, col

from receiver.models import Agent, ProcessedNotification, Tombstone
from receiver.provisioning_tables import ParkedChangeRow

__all__ = [
    "AGENT_COLUMNS",
    "TOMBSTONE_COLUMNS",
    "agents_by_crm_or_username",
    "agents_lookup",
    "parked_rows_of",
    "processed_of",
    "tombstones_of",
    "unique_lookups",
]

#: Columns of the rows :func:`agents_by_crm_or_username` returns, in order.
AGENT_COLUMNS = (
    col(Agent.id),
    col(Agent.crm_id),
    col(Agent.username),
    col(Agent.username_key),
    col(Agent.system_modstamp),
    col(Agent.data),
)

#: Columns of the rows :func:`tombstones_of` returns, in order.
TOMBSTONE_COLUMNS = (
    col(Tombstone.crm_id),
    col(Tombstone.agent_id),
    col(Tombstone.system_modstamp),
)


def _one_of(column: Any, name: str, postgresql: bool) -> ColumnElement[bool]:
    """``column`` is one of the values of the list parameter ``name``."""
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(String())))  # type: ignore[no-any-return]
    return column.in_(_json_values(name))  # type: ignore[no-any-return]


def _json_values(name: str) -> Select[Any]:
    """SQLite: the values of the JSON array parameter ``name``."""
    return select(func.json_each(bindparam(name, type_=String())).table_valued("value").c.value)


def _listed(values: Iterable[str], postgresql: bool) -> list[str] | str:
    """The value of a list parameter: the sorted values (PostgreSQL: an array), or as a
    JSON array (SQLite: read with ``json_each``)."""
    ordered = sorted(values)
    return ordered if postgresql else orjson.dumps(ordered).decode()


def unique_lookups(
    columns: Sequence[Any], organization: Any, key: Any, name: str, postgresql: bool
) -> Select[Any]:
    """The rows of ``columns`` whose ``organization`` is the ``org_id`` parameter and whose
    ``key`` is one of the list parameter ``name``; (organization, key) is unique.

    PostgreSQL: one index probe per listed value (``unnest`` of the array, a ``LATERAL``
    search with ``LIMIT 1``, which the planner cannot flatten into a join). Written as
    ``key = ANY(array)``, a table without statistics (a new store, or one that grew since
    autovacuum's last ``ANALYZE``) is planned as a scan of the organization filtered by
    the array: 12-19 ms per message at 3,000 agents, growing with the store, against
    about 1 ms. SQLite: ``key IN (...)``, which it always serves from the index."""
    org = organization == bindparam("org_id")
    if not postgresql:
        return select(*columns).where(org, _one_of(key, name, postgresql))
    wanted = (
        func.unnest(bindparam(name, type_=ARRAY(String())))
        .table_valued("v")
        .render_derived(name=f"{name}_k")
    )
    found = (
        select(*columns)
        .where(org, key == wanted.c.v)
        # The unique index's own order: without statistics the planner otherwise ties it
        # with any index that merely starts with the organization (the Users page's
        # (organization_id, lower(name), crm_id)) and may scan that one's entries.
        .order_by(organization, key)
        .limit(literal_column("1"))
        .lateral(f"{name}_row")
    )
    return select(*found.c).select_from(wanted).join(found, true())


@functools.cache
def _statements(postgresql: bool) -> dict[str, Any]:
    agent_org = col(Agent.organization_id)
    by_crm = unique_lookups(AGENT_COLUMNS, agent_org, col(Agent.crm_id), "crm_ids", postgresql)
    by_username = unique_lookups(
        AGENT_COLUMNS, agent_org, col(Agent.username_key), "username_keys", postgresql
    )
    return {
        "crm": by_crm,
        "username": by_username,
        # SQLite: the username arm leaves out the agents the crm arm reads (an updated
        # user is both), so each row is read, decoded and typed once.
        "both": union_all(
            by_crm,
            by_username
            if postgresql
            else by_username.where(col(Agent.crm_id).not_in(_json_values("crm_ids"))),
        ),
        "tombstones": unique_lookups(
            TOMBSTONE_COLUMNS,
            col(Tombstone.organization_id),
            col(Tombstone.crm_id),
            "crm_ids",
            postgresql,
        ),
        "parked": select(ParkedChangeRow)
        .where(
            col(ParkedChangeRow.organization_id) == bindparam("org_id"),
            _one_of(col(ParkedChangeRow.crm_id), "crm_ids", postgresql),
        )
        .order_by(col(ParkedChangeRow.id)),
        "processed": unique_lookups(
            (col(ProcessedNotification.notification_id),),
            col(ProcessedNotification.organization_id),
            col(ProcessedNotification.notification_id),
            "notification_ids",
            postgresql,
        ),
    }


def _connection(session: Session) -> tuple[Connection, bool]:
    """The session's connection (in its transaction) and whether it is PostgreSQL."""
    connection = session.connection()
    return connection, connection.dialect.name == "postgresql"


def agents_lookup(
    org_id: str,
    crm_ids: Collection[str],
    username_keys: Collection[str],
    *,
    postgresql: bool = False,
) -> tuple[Select[Any] | CompoundSelect[Any], dict[str, Any]] | None:
    """The statement reading the agents of ``org_id`` whose crm id is in ``crm_ids`` or
    whose username key is in ``username_keys`` (an agent matching both comes twice), and
    its parameters; ``None`` when both are empty. Lists are sorted, so one message gives
    one set of parameters."""
    statements = _statements(postgresql)
    params: dict[str, Any] = {"org_id": org_id}
    if crm_ids:
        params["crm_ids"] = _listed(crm_ids, postgresql)
    if username_keys:
        params["username_keys"] = _listed(username_keys, postgresql)
    if crm_ids and username_keys:
        return statements["both"], params
    if crm_ids:
        return statements["crm"], params
    if username_keys:
        return statements["username"], params
    return None


def agents_by_crm_or_username(
    session: Session, org_id: str, crm_ids: Collection[str], username_keys: Collection[str]
) -> Sequence[Any]:
    """Rows (:data:`AGENT_COLUMNS`) of the agents of ``org_id`` named by crm id or username
    key, each agent once. Raises what the session raises."""
    connection, postgresql = _connection(session)
    lookup = agents_lookup(org_id, crm_ids, username_keys, postgresql=postgresql)
    if lookup is None:
        return []
    statement, params = lookup
    seen: set[str] = set()
    rows = []
    for row in connection.execute(statement, params):
        if row[0] not in seen:
            seen.add(row[0])
            rows.append(row)
    return rows


def tombstones_of(session: Session, org_id: str, crm_ids: Collection[str]) -> Sequence[Any]:
    """Rows (:data:`TOMBSTONE_COLUMNS`) of the tombstones of these users of ``org_id``."""
    if not crm_ids:
        return []
    connection, postgresql = _connection(session)
    statement = _statements(postgresql)["tombstones"]
    params = {"org_id": org_id, "crm_ids": _listed(crm_ids, postgresql)}
    return connection.execute(statement, params).all()


def processed_of(
    session: Session, org_id: str, notification_ids: Collection[str]
) -> frozenset[str]:
    """Those of ``notification_ids`` already processed in ``org_id``."""
    if not notification_ids:
        return frozenset()
    connection, postgresql = _connection(session)
    statement = _statements(postgresql)["processed"]
    params = {"org_id": org_id, "notification_ids": _listed(notification_ids, postgresql)}
    return frozenset(connection.execute(statement, params).scalars())


def parked_rows_of(
    session: Session, org_id: str, crm_ids: Collection[str]
) -> Sequence[ParkedChangeRow]:
    """The parked change rows of these users of ``org_id``, oldest first (one query)."""
    if not crm_ids:
        return []
    postgresql = session.connection().dialect.name == "postgresql"
    statement = _statements(postgresql)["parked"]
    params = {"org_id": org_id, "crm_ids": _listed(crm_ids, postgresql)}
    return session.scalars(statement, params).all()
