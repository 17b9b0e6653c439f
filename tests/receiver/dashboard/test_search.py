"""The Users page's search index (receiver.dashboard.directory, migration
0010_dashboard_search): SQLite FTS5 trigram tables kept in step with ``agent`` by
triggers, PostgreSQL pg_trgm GIN indexes; the same answers as a substring scan."""

from __future__ import annotations

import re
import sqlite3
from html import unescape

import pytest
import sqlalchemy as sa

from receiver.dashboard import directory
from receiver.dashboard.directory import decode_cursor, fts_query, list_page
from receiver.db import transaction
from tests.factories import make_notification, next_id
from tests.receiver.dashboard._harness import Dash
from tests.receiver.dashboard.test_users import _seed

_ROW = re.compile(r"<tr>\s*<td><a href=\"[^\"]*/users/(\w+)\">(.*?)</a></td>", re.S)


def _names(d: Dash, q: str) -> list[str]:
    response = d.client.get(f"/organizations/{d.org}/users", params={"q": q})
    assert response.status_code == 200
    return [unescape(m.group(2)) for m in _ROW.finditer(response.text)]


def _old_sqlite(d: Dash) -> bool:
    return d.engine.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 34)


def test_the_store_has_a_trigram_index_for_the_search(dash: Dash) -> None:
    if _old_sqlite(dash):
        pytest.skip("FTS5's trigram tokenizer needs SQLite 3.34 (the page then scans)")
    with dash.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            tables = set(
                conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'"))
                .scalars()
                .all()
            )
            assert {"agent_search", "agent_search_doc"} <= tables
            sql = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'agent_search'")
            ).scalar_one()
            assert "trigram" in sql
        else:
            indexes = conn.execute(
                sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'agent'")
            ).all()
            trigram = {name for name, definition in indexes if "gin_trgm_ops" in definition}
            assert trigram == {"ix_agent_search_name_trgm", "ix_agent_search_username_trgm"}


def test_the_search_plan_reads_the_trigram_index(dash: Dash) -> None:
    """SQLite: the query for 3 characters or more scans the FTS5 table, not the agents.
    PostgreSQL: with sequential and plain index scans priced out, the planner can answer
    the filter from the GIN indexes (on a tiny table it would rightly scan)."""
    if _old_sqlite(dash):
        pytest.skip("FTS5's trigram tokenizer needs SQLite 3.34")
    if dash.engine.dialect.name == "sqlite":
        _seed(dash, 50)
    with transaction(dash.engine) as session:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(sa.text("ANALYZE"))  # statistics tempt the planner to walk
            statements: list[tuple[str, object]] = []

            def keep(*args: object) -> None:
                statements.append((str(args[2]), args[3]))

            sa.event.listen(dash.engine, "before_cursor_execute", keep)
            try:
                list_page(session, organization_id=dash.org, query="agent 004")
            finally:
                sa.event.remove(dash.engine, "before_cursor_execute", keep)
            (statement, parameters) = next(s for s in statements if "CROSS JOIN" in s[0])
            raw = session.connection().connection.driver_connection
            assert raw is not None
            plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert "VIRTUAL TABLE" in plan[0]  # the matches drive the query...
            assert any(p.startswith("SEARCH d USING INTEGER PRIMARY KEY") for p in plan)  # by id
        else:
            session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            session.execute(sa.text("SET LOCAL enable_indexscan = off"))
            text_plan = "\n".join(
                session.execute(
                    sa.text(
                        "EXPLAIN SELECT id FROM agent WHERE "
                        "coalesce(lower(data ->> 'name'), '') LIKE '%hopper%' "
                        "OR username_key LIKE '%hopper%'"
                    )
                ).scalars()
            )
            assert "ix_agent_search_name_trgm" in text_plan


def test_the_index_follows_create_rename_and_deprovision(dash: Dash) -> None:
    dash.sign_in()
    user = next_id("005")
    dash.post_message(make_notification(user_id=user, Name="Zora Neale", Username="zn@acme.com"))
    assert _names(dash, "neale") == ["Zora Neale"]
    assert _names(dash, "ZN@ACME") == ["Zora Neale"]
    renamed = make_notification(
        user_id=user,
        Name="Zora Hurston",
        Username="zora.hurston@acme.com",
        SystemModstamp="2026-11-21T10:00:00.000Z",
    )
    dash.post_message(renamed)
    assert _names(dash, "neale") == []
    assert _names(dash, "zn@acme") == []
    assert _names(dash, "hurston") == ["Zora Hurston"]
    assert _names(dash, "ra.hur") == ["Zora Hurston"]
    gone = make_notification(
        user_id=user,
        Name="Zora Hurston",
        IsActive="false",
        SystemModstamp="2026-11-22T10:00:00.000Z",
    )
    dash.post_message(gone)
    assert _names(dash, "hurston") == []
    with dash.engine.connect() as conn:
        if conn.dialect.name == "sqlite" and not _old_sqlite(dash):
            docs = conn.execute(sa.text("SELECT count(*) FROM agent_search_doc")).scalar_one()
            agents = conn.execute(sa.text("SELECT count(*) FROM agent")).scalar_one()
            assert docs == agents


def test_search_folds_the_case_of_every_letter_from_three_characters(dash: Dash) -> None:
    if _old_sqlite(dash):
        pytest.skip("without FTS5's trigram tokenizer SQLite folds ASCII letters only")
    dash.sign_in()
    dash.post_message(make_notification(Name="JÜRGEN GROSS", Username="jg@acme.com"))
    assert _names(dash, "jürgen") == ["JÜRGEN GROSS"]
    assert _names(dash, "ÜRG") == ["JÜRGEN GROSS"]


@pytest.mark.parametrize("q", ["a", "Ad", "%", "_a", "\\"])
def test_one_or_two_characters_are_still_a_substring(dash: Dash, q: str) -> None:
    dash.sign_in()
    dash.post_message(
        make_notification(Name="Ada Lovelace", Username="ada@acme.com"),
        make_notification(Name="Grace Hopper", Username="grace@acme.com"),
    )
    expected = {
        "a": ["Ada Lovelace", "Grace Hopper"],
        "Ad": ["Ada Lovelace"],
        "%": [],
        "_a": [],
        "\\": [],
    }[q]
    assert _names(dash, q) == expected


@pytest.mark.parametrize("q", ["ø", "Ø", "ør", "ØR", "Ür", "üR"])
def test_one_or_two_characters_fold_the_case_of_every_letter(dash: Dash, q: str) -> None:
    # SQLite's lower() and LIKE fold ASCII only: the name key of ØRSTED keeps its Ø.
    dash.sign_in()
    dash.post_message(
        make_notification(Name="ØRSTED ÜRGE", Username="o@acme.com"),
        make_notification(Name="Astrid Ørsted", Username="astrid@acme.com"),
        make_notification(Name="Grace Hopper", Username="grace@acme.com"),
    )
    expected = ["Astrid Ørsted", "ØRSTED ÜRGE"] if q.casefold().startswith("ø") else ["ØRSTED ÜRGE"]
    assert _names(dash, q) == expected


def test_a_name_is_looked_for_in_each_spelling_of_its_non_ascii_letters() -> None:
    assert directory.name_spellings("Ab%") == ["ab%"]
    assert directory.name_spellings("Ør") == ["Ør", "ør"]
    assert len(directory.name_spellings("ÄÖÜÅ")) == 16
    assert directory.name_spellings("ÄÖÜÅÉ") == ["äöüåé"]  # too many: lowered only
    assert directory.name_spellings("ı") == ["ı"]  # not "I": LIKE would match every i
    assert directory.clean_query("Zoe\u0301") == "Zoé"  # composed, as Salesforce sends names


@pytest.mark.parametrize(
    "q", ['"', 'a" OR "b', "NEAR(a b)", "name : x", "* OR 1", "^abc", "a AND NOT b"]
)
def test_fts_syntax_in_the_query_is_plain_text(dash: Dash, q: str) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="Plain Name", Username="plain@acme.com"))
    assert _names(dash, q) == []
    assert _names(dash, "plain") == ["Plain Name"]


def test_the_fts_query_quotes_each_phrase() -> None:
    assert fts_query('ab"c') == 'name : "ab""c" OR username : "ab""c"'
    assert fts_query("MÜLLER") == 'name : "MÜLLER" OR username : "müller"'


@pytest.mark.parametrize("dense", [False, True], ids=["sorted-matches", "name-walk"])
def test_search_pages_with_next_and_previous(
    dash: Dash, dense: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both SQLite plans (sort the FTS5 matches; walk the name order once a term has
    many matches) page the same way; PostgreSQL runs the same pages once each."""
    if dense:
        monkeypatch.setattr(directory, "DENSE", 50)
    _seed(dash, 230, name="Team {i:04d}")
    with transaction(dash.engine, read_only=True) as session:
        first = list_page(session, organization_id=dash.org, query="team")
        assert [r.name for r in first.rows] == [f"Team {i:04d}" for i in range(100)]
        assert first.previous_cursor is None
        second = list_page(
            session, organization_id=dash.org, query="team", after=_decoded(first.next_cursor)
        )
        assert [r.name for r in second.rows] == [f"Team {i:04d}" for i in range(100, 200)]
        back = list_page(
            session,
            organization_id=dash.org,
            query="team",
            before=_decoded(second.previous_cursor),
        )
        assert [r.name for r in back.rows] == [r.name for r in first.rows]
        third = list_page(
            session, organization_id=dash.org, query="team", after=_decoded(second.next_cursor)
        )
        assert [r.name for r in third.rows] == [f"Team {i:04d}" for i in range(200, 230)]
        assert third.next_cursor is None


def _decoded(cursor: str | None) -> tuple[str, str]:
    decoded = decode_cursor(cursor)
    assert decoded is not None
    return decoded


@pytest.mark.parametrize("q", ["\x00", "ab\x00cd", "\x00\x00zzz"])
def test_nul_characters_in_the_query_are_dropped(dash: Dash, q: str) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="Abcd Efgh", Username="zzz@acme.com"))
    response = dash.client.get(f"/organizations/{dash.org}/users", params={"q": q})
    assert response.status_code == 200
    expected = {"\x00": ["Abcd Efgh"], "ab\x00cd": ["Abcd Efgh"], "\x00\x00zzz": ["Abcd Efgh"]}
    assert _names(dash, q) == expected[q]


def test_a_short_search_says_it_cannot_use_the_index(dash: Dash) -> None:
    dash.sign_in()
    short = dash.client.get(f"/organizations/{dash.org}/users", params={"q": "ab"}).text
    assert "fewer than 3 characters cannot use the search index" in short
    long = dash.client.get(f"/organizations/{dash.org}/users", params={"q": "abc"}).text
    assert "cannot use the search index" not in long


def test_a_term_most_agents_share_walks_the_name_order(
    dash: Dash, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dash.engine.dialect.name != "sqlite" or _old_sqlite(dash):
        pytest.skip("SQLite's plan choice (with FTS5's trigram tokenizer)")
    monkeypatch.setattr(directory, "DENSE", 50)
    _seed(dash, 120, name="Team {i:04d}")
    statements: list[str] = []

    def keep(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(dash.engine, "before_cursor_execute", keep)
    try:
        with transaction(dash.engine, read_only=True) as session:
            dense = list_page(session, organization_id=dash.org, query="team")
            rare = list_page(session, organization_id=dash.org, query="team 0042")
            folded = list_page(session, organization_id=dash.org, query="TEAM")
    finally:
        sa.event.remove(dash.engine, "before_cursor_execute", keep)
    assert [r.name for r in dense.rows] == [f"Team {i:04d}" for i in range(100)]
    assert [r.name for r in rare.rows] == ["Team 0042"]
    assert [r.name for r in folded.rows] == [r.name for r in dense.rows]
    assert sum("CROSS JOIN" in s for s in statements) == 1  # only the rare term sorts
