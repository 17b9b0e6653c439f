"""The Provisioning log page, its filters and downloads (receiver.dashboard.log / logview)."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.factories import make_notification, next_id
from tests.receiver.dashboard._harness import Dash, MakeDash


def _log(d: Dash, **params: str) -> str:
    response = d.client.get(f"/organizations/{d.org}/provisioning-log", params=params)
    assert response.status_code == 200
    return response.text


def test_a_row_per_notification_with_action_and_reason_failed_ones_stand_out(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="Fine User"), make_notification(IsActive=None))
    html = _log(dash)
    assert "created" in html
    failed_row = next(r for r in html.split("<tr")[1:] if ">failed</span>" in r)
    assert 'class="failed"' in failed_row
    assert "IsActive" in failed_row  # the reason names the missing field
    assert "Replay" in failed_row or "replay not available" in failed_row


def test_a_rejected_messages_reason_is_in_the_reason_column(dash: Dash) -> None:
    """Newcomer finding: a rejected message's reason squeezed the Message outcome column
    while its Reason cell stayed empty."""
    dash.sign_in()
    response = dash.post_message(make_notification(), salesforce_org_id="00D000000000099EAA")
    assert response.status_code == 403
    row = next(r for r in _log(dash).split("<tr")[1:] if "rejected" in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
    assert cells[1].strip() == "rejected"
    assert cells[4].startswith("OrganizationId 00D000000000099EAA is not the Salesforce org")


def test_filters_by_action_outcome_user_and_date(dash: Dash) -> None:
    dash.sign_in()
    user = next_id("005")
    dash.post_message(make_notification(user_id=user, Name="Filter Me"))
    dash.clock.advance(days=2)
    dash.post_message(make_notification(IsActive=None))
    dash.sign_in()  # the session of two days ago has ended
    assert ">created</span>" not in _log(dash, action="failed")
    assert ">failed</span>" in _log(dash, action="failed")
    only_user = _log(dash, user=user[:15])
    assert user in only_user and ">failed</span>" not in only_user
    day_one = _log(dash, **{"from": "2026-11-29", "to": "2026-11-29"})
    assert ">created</span>" in day_one and ">failed</span>" not in day_one
    assert "No notification matches" in _log(dash, outcome="ignored")


def test_a_from_date_after_the_to_date_shows_the_days_between_and_says_so(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="Day One"))  # 2026-11-29 on the harness clock
    dash.clock.advance(days=2)
    dash.post_message(make_notification(IsActive=None))  # 2026-12-01
    dash.sign_in()
    reversed_range = _log(dash, **{"from": "2026-11-30", "to": "2026-11-28"})
    assert ">created</span>" in reversed_range and ">failed</span>" not in reversed_range
    assert "From 2026-11-30 was after To 2026-11-28: the dates were swapped" in reversed_range
    assert 'name="from" type="date" value="2026-11-28"' in reversed_range
    assert 'name="to" type="date" value="2026-11-30"' in reversed_range
    rows = dash.client.get(
        f"/organizations/{dash.org}/provisioning-log.json",
        params={"from": "2026-12-02", "to": "2026-11-30"},
    ).json()
    assert [r["action"] for r in rows] == ["failed"]
    assert "swapped" not in _log(dash, **{"from": "2026-11-29", "to": "2026-11-29"})


def test_the_source_filter_shows_the_decisions_of_one_source_and_replays_only_those(
    dash: Dash,
) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="Delivered"), make_notification(IsActive=None))
    (event_id,) = _replay_forms(_log(dash))
    dash.post_form(  # not fixed: its replay fails again, a row of source replay
        f"/organizations/{dash.org}/provisioning-log/replay",
        {"event_id": event_id},
        page=f"/organizations/{dash.org}/provisioning-log",
    )
    replays = _log(dash, source="replay")
    assert '<option value="replay" selected>Replay</option>' in replays
    assert replays.count(">failed</span>") == 1 and ">created</span>" not in replays
    assert '<span class="hint">Outbound Message</span>' not in replays
    delivered = _log(dash, source="outbound-message")
    assert ">created</span>" in delivered and delivered.count(">failed</span>") == 1
    assert '<span class="hint">Replay</span>' not in delivered
    assert "No notification matches" in _log(dash, source="reconcile")
    odd = _log(dash, source="<b>webhook</b>")
    assert "unknown source" in odd and "<b>webhook</b>" not in odd
    assert odd.count(">failed</span>") == 2  # the filter ignored, said so
    rows = dash.client.get(
        f"/organizations/{dash.org}/provisioning-log.json", params={"source": "replay"}
    ).json()
    assert [(r["source"], r["action"]) for r in rows] == [("replay", "failed")]
    # a bulk replay keeps the view's source: the delivery's failure was replayed already,
    # and the replay's own failure is not of this source
    assert "Nothing here to replay" in _log(dash, action="failed", source="outbound-message")
    of_replays = _log(dash, action="failed", source="replay")
    assert "1 failed again when replayed earlier" in of_replays
    assert '<input type="hidden" name="source" value="replay">' in of_replays
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        {"source": "outbound-message", "again": "1"},
        page=f"/organizations/{dash.org}/provisioning-log?action=failed",
    )
    assert "source=outbound-message" in response.headers["location"]
    assert "replayed=0" in response.headers["location"]  # the replay's failure: not in scope


def test_a_source_filter_walks_its_own_index(dash: Dash) -> None:
    """The page's message walk for a Source filter is served from
    ix_provisioning_message_organization_id_source (migration 0018), on SQLite and on
    PostgreSQL (there with sequential scans off: a test store is too small for the
    planner to prefer any index by itself)."""
    dash.sign_in()
    dash.post_message(make_notification())
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if (
            "FROM provisioning_message" in statement
            and "provisioning_message.source =" in statement
        ):
            sent.append((statement, parameters))

    event.listen(dash.engine, "before_cursor_execute", capture)
    try:
        _log(dash, source="replay")
    finally:
        event.remove(dash.engine, "before_cursor_execute", capture)
    walk = [(st, p) for st, p in sent if "ORDER BY provisioning_message.id DESC" in st]
    assert len(walk) == 1, sent
    statement, parameters = walk[0]
    sqlite = dash.engine.dialect.name == "sqlite"
    with dash.engine.begin() as connection:
        if not sqlite:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        plan = " ".join(
            str(row[-1]) for row in connection.exec_driver_sql(prefix + statement, parameters)
        )
    assert "ix_provisioning_message_organization_id_source" in plan, plan


def test_unreadable_filters_are_named_and_ignored(dash: Dash) -> None:
    dash.sign_in()
    html = _log(dash, action="<b>x</b>", user="not-an-id", **{"from": "yesterday"})
    assert "unknown action" in html and "not a User id" in html and "YYYY-MM-DD" in html
    assert "<b>x</b>" not in html
    # other ISO forms the date box cannot show are not dates (attack finding)
    for odd in ("20261205", "2026-W49-1", "２０２６-12-05"):
        assert "the From date is not YYYY-MM-DD" in _log(dash, **{"from": odd})


def test_csv_and_json_downloads_follow_the_filter(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="=HYPERLINK(1)"), make_notification(IsActive=None))
    base = f"/organizations/{dash.org}/provisioning-log"
    response = dash.client.get(base + ".csv", params={"action": "failed"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["action"] for r in rows] == ["failed"]
    data = json.loads(dash.client.get(base + ".json").text)
    assert sorted(r["action"] for r in data) == ["created", "failed"]
    assert {r["source"] for r in data} == {"outbound-message"}
    assert all("token" not in json.dumps(r).lower() for r in data)
    # attack finding: a filter it cannot read widened a download to the whole log
    for odd in ({"source": "Reconcile"}, {"action": "<b>x</b>"}, {"user": "nobody"}):
        refused = dash.client.get(base + ".csv", params=odd)
        assert refused.status_code == 400 and "Nothing was downloaded" in refused.text
        assert "<b>x</b>" not in refused.text


def test_downloads_name_each_user_as_the_page_does(
    dash: Dash, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newcomer finding: the downloads had the crmId and no name."""
    dash.sign_in()
    dash.post_message(
        make_notification(Name="=Ada Lovelace"), make_notification(IsActive=None, Name="Kept Name")
    )
    base = f"/organizations/{dash.org}/provisioning-log"
    data = json.loads(dash.client.get(base + ".json").text)
    assert sorted((r["action"], r["name"]) for r in data) == [
        ("created", "=Ada Lovelace"),
        ("failed", "Kept Name"),  # no agent: the Name its kept notification carried
    ]
    rows = list(csv.DictReader(io.StringIO(dash.client.get(base + ".csv").text)))
    assert sorted(r["name"] for r in rows) == ["'=Ada Lovelace", "Kept Name"]
    monkeypatch.setattr("receiver.dashboard.log._NAMED_CHUNK", 1)  # a query per row
    assert json.loads(dash.client.get(base + ".json").text) == data


def test_csv_cells_that_look_like_formulas_are_quoted(dash: Dash) -> None:
    from receiver.dashboard.log import _cell

    assert _cell("=1+1") == "'=1+1" and _cell("-x") == "'-x" and _cell("ok") == "ok"
    # a right-to-left override would show "admin@example.com" in a spreadsheet
    assert _cell("\u202emoc.elpmaxe@nimda") == "[U+202E]moc.elpmaxe@nimda"
    assert _cell("=\u2066x") == "'=[U+2066]x"
    # invisible characters that make two names look the same (attack finding)
    assert _cell("\ufeffAdmin\u00ad\u200b\u0085") == "[U+FEFF]Admin[U+00AD][U+200B][U+0085]"
    assert _cell("Ali\u200dce \u0645\u200c") == "Ali\u200dce \u0645\u200c"  # joiners stay
    looks_alike = "Ada\u200e\u061c\u180e\u034f\u17b4\u3164\u2028 Lovelace\U000e0041"
    assert _cell(looks_alike) == (
        "Ada[U+200E][U+061C][U+180E][U+034F][U+17B4][U+3164][U+2028] Lovelace[U+E0041]"
    )
    assert _cell("\u2764\ufe0f") == "\u2764\ufe0f"  # an emoji's variation selector stays


def test_paging_by_message(dash: Dash) -> None:
    dash.sign_in()
    for _ in range(52):
        dash.post_message(make_notification(), make_notification())
    first = _log(dash)
    assert ">Older<" in first
    assert first.count(">created</span>") == 100  # 50 whole messages of 2
    link = re.search(r'href="([^"]*before=[^"]*)">Older<', first)
    assert link is not None
    older = dash.client.get(link.group(1)).text
    assert older.count(">created</span>") == 4 and ">Older<" not in older


def test_a_message_larger_than_a_page_is_paged_inside(dash: Dash) -> None:
    """Newcomer finding: a reconcile run of 4,700 users was one page of 4,700 rows. Pages
    of 30 here over messages of 5, 100 and 3 notifications (newest last): every row once,
    in order, each page full but the last, the large message cut at 27, 57 and 87."""
    from receiver.dashboard.logpages import PageStart, iter_rows, log_page
    from receiver.dashboard.logview import LogRow, parse_filter
    from receiver.db import transaction

    dash.sign_in()
    for size in (5, 100, 3):
        assert dash.post_message(*(make_notification() for _ in range(size))).status_code == 200
    flt = parse_filter({})
    pages: list[list[LogRow]] = []
    starts: list[PageStart | None] = [None]
    while True:
        with transaction(dash.engine, read_only=True) as session:
            rows, start = log_page(
                session, organization_id=dash.org, flt=flt, start=starts[-1], rows=30
            )
        pages.append(rows)
        if start is None:
            break
        starts.append(start)
    assert [len(p) for p in pages] == [30, 30, 30, 18]
    assert [s[1] for s in starts[1:] if s is not None] == [27, 57, 87]
    assert None not in starts[1:]
    every = [(r.message_id, r.position) for p in pages for r in p]
    assert every == [
        (r.message_id, r.position)
        for r in iter_rows(dash.engine, organization_id=dash.org, flt=flt)
    ]
    assert len(every) == len(set(every)) == 108
    # the page's Older link carries the cut: at=<message id>.<position>
    big = pages[1][0].message_id
    first = _log(dash)
    assert first.count(">created</span>") == 100  # 3, then the first 97 of the 100
    assert f"at={big}.97" in first
    inside = _log(dash, at=f"{big}.30")
    # its last 70 rows, then the older message of 5: 75 rows, the end of the log
    assert inside.count(">created</span>") == 75 and ">Older<" not in inside
    # unreadable: the newest page, and it says so (newcomer finding: silently ignored)
    unreadable = _log(dash, at="x.30")
    assert "Page address ignored" in unreadable and "Page address ignored" not in first
    assert unreadable.count(">created</span>") == 100 and f"at={big}.97" in unreadable
    assert "Page address ignored" in _log(dash, before="abc")
    # a readable before= beside an unreadable at= is the page shown: no note (attack finding)
    assert "Page address ignored" not in _log(dash, at="5.x", before=str(big))
    # no such message (attack finding: a 500): the page starts below the id it names
    assert _log(dash, at="5000000.0").count(">created</span>") == 100  # the newest 100
    past = _log(dash, at="0.0")
    assert ">created</span>" not in past
    # past the oldest row: not "No message from Salesforce yet" (newcomer finding)
    assert "No more rows: this page starts after the oldest one." in past
    assert "No message from Salesforce yet" not in past and ">Newest<" in past
    # an address naming another organization's message, or one the filters leave out,
    # starts nothing inside it
    other = dash.new_org(name="other-org")
    with transaction(dash.engine) as session:
        from receiver.models import ProvisioningEvent, ProvisioningMessage
        from receiver.outcomes import MessageOutcome

        theirs = ProvisioningMessage(
            organization_id=other,
            received_at=dash.clock(),
            outcome=MessageOutcome.PROCESSED,
            notification_count=1,
            detail="their own detail",
        )
        session.add(theirs)
        session.flush()
        their_id = int(theirs.id or 0)
        session.add(
            ProvisioningEvent(
                message_id=their_id, position=0, action="created", reason="their own reason"
            )
        )
    assert "their own" not in _log(dash, at=f"{their_id}.0")
    assert _log(dash, at=f"{big}.30", outcome="ignored").count(">created</span>") == 0


def test_newer_goes_back_one_page(dash: Dash) -> None:
    """Newcomer finding (two stops running): the log had Older and Newest, no way back one
    page. Pages of 30 over messages of 5, 100, a rejected one (no notifications, one row)
    and 3 notifications: from each page, Newer starts exactly the page before it; with an
    Action filter (pages not always full), the page it starts ends right before."""
    from receiver.dashboard.logpages import PageStart, iter_rows, log_page, newer_start
    from receiver.dashboard.logview import LogRow, parse_filter
    from receiver.db import transaction

    dash.sign_in()
    for size in (5, 100):
        assert dash.post_message(*(make_notification() for _ in range(size))).status_code == 200
    rejected = dash.post_message(make_notification(), salesforce_org_id="00D000000000099EAA")
    assert rejected.status_code == 403
    assert (
        dash.post_message(*(make_notification(IsActive=None) for _ in range(3))).status_code == 200
    )

    def pages(flt_params: dict[str, str]) -> list[tuple[PageStart | None, list[LogRow]]]:
        flt = parse_filter(flt_params)
        out: list[tuple[PageStart | None, list[LogRow]]] = []
        start: PageStart | None = None
        while True:
            with transaction(dash.engine, read_only=True) as session:
                rows, nxt = log_page(
                    session, organization_id=dash.org, flt=flt, start=start, rows=30
                )
            out.append((start, rows))
            if nxt is None:
                return out
            start = nxt

    def newer(flt_params: dict[str, str], first: LogRow) -> PageStart | None:
        with transaction(dash.engine, read_only=True) as session:
            return newer_start(
                session,
                organization_id=dash.org,
                flt=parse_filter(flt_params),
                first=first,
                rows=30,
            )

    every = pages({})
    assert [len(rows) for _, rows in every] == [30, 30, 30, 19]
    for k in range(1, len(every)):
        assert newer({}, every[k][1][0]) == every[k - 1][0], k
    # with a filter: the page Newer starts holds at most 30 rows, the last one right before
    flt = {"action": "created"}
    order = [
        (r.message_id, r.position)
        for r in iter_rows(dash.engine, organization_id=dash.org, flt=parse_filter(flt))
    ]
    filtered = pages(flt)
    assert len(filtered) > 1
    for k in range(1, len(filtered)):
        first = filtered[k][1][0]
        start = newer(flt, first)
        with transaction(dash.engine, read_only=True) as session:
            back, _ = log_page(
                session, organization_id=dash.org, flt=parse_filter(flt), start=start, rows=30
            )
        i = order.index((first.message_id, first.position))
        got = [(r.message_id, r.position) for r in back]
        begin = max(0, i - 30)  # exactly the 30 shown rows before (fewer at the top)
        assert (start is None) == (begin == 0), k
        assert got == order[begin : begin + len(got)] and len(got) <= i - begin, k
    # on the page (100 rows): none on the first page; on the second, the first page
    first_page = _log(dash)
    assert ">Newer<" not in first_page
    link = re.search(r'href="([^"]*at=[^"]*)">Older<', first_page)
    assert link is not None
    html = dash.client.get(link.group(1).replace("&amp;", "&")).text
    assert f'href="/organizations/{dash.org}/provisioning-log" rel="prev">Newer</a>' in html


def _replay_forms(html: str) -> list[str]:
    """The event ids of the page's Replay forms."""
    return re.findall(r'name="event_id" value="(\d+)"', html)


def test_replay_decides_a_failed_notification_again_through_the_decision_code(
    dash: Dash,
) -> None:
    dash.sign_in()
    dash.post_message(make_notification(IsActive=None))
    html = _log(dash)
    (event_id,) = _replay_forms(html)
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay",
        {"event_id": event_id},
        page=f"/organizations/{dash.org}/provisioning-log",
    )
    assert response.status_code == 303
    assert "flash=replay-failed-again" in response.headers["location"]
    after = dash.client.get(response.headers["location"]).text
    assert "it failed again" in after
    # a new log entry: the same notification failed again, with its reason
    assert after.count(">failed</span>") == 2
    assert "IsActive" in after


def test_a_rows_replay_comes_back_to_the_view_it_was_pressed_in(dash: Dash) -> None:
    """Newcomer finding: a row's Replay in the failed view went back to the unfiltered
    log. Its form carries the view's filters, and its answer keeps them."""
    dash.sign_in()
    dash.post_message(make_notification(IsActive=None), make_notification(Name="Fine"))
    view = f"/organizations/{dash.org}/provisioning-log?action=failed&source=outbound-message"
    html = dash.client.get(view).text
    (event_id,) = _replay_forms(html)
    assert '<input type="hidden" name="action" value="failed">' in html
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay",
        {"event_id": event_id, "action": "failed", "source": "outbound-message"},
        page=view,
    )
    location = response.headers["location"]
    assert location.startswith(f"/organizations/{dash.org}/provisioning-log?")
    assert "action=failed" in location and "source=outbound-message" in location
    assert "flash=replay-failed-again" in location
    after = dash.client.get(location).text
    assert "it failed again" in after and ">Fine<" not in after  # still the failed view
    from receiver.db import transaction
    from receiver.jobs import JobKind, latest_jobs

    with transaction(dash.engine, read_only=True) as session:
        (job,) = latest_jobs(session, dash.org, JobKind.REPLAY)
    assert job.started_by == "operator:ops"  # who pressed it
    # a view that cannot be read is dropped, never echoed
    odd = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay",
        {"event_id": event_id, "action": "<b>"},
        page=view,
    )
    assert "action=" not in odd.headers["location"]


def test_a_view_with_an_unread_user_filter_replays_what_it_counts(dash: Dash) -> None:
    """Attack finding: with a user filter that is not a User id (ignored, and said), the
    page offered "Replay 2 failed", but its form carried the unread id and the press
    replayed nothing; a row's Replay there went back without the view's filters."""
    dash.sign_in()
    dash.post_message(make_notification(IsActive=None), make_notification(IsActive=None))
    view = f"/organizations/{dash.org}/provisioning-log?action=failed&user=garbage"
    html = dash.client.get(view).text
    assert "Filter ignored: the Salesforce user id is not a User id" in html
    assert 'value="garbage"' in html  # still in the box, to be corrected
    assert 'name="user" value="garbage"' not in html.split("</form>", 1)[1]  # not in forms
    assert ">Replay 2 failed</button>" in html
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        {"user": "", "from": "", "to": "", "outcome": "", "source": ""},
        page=view,
    )
    assert "replayed=2" in response.headers["location"]
    (event_id, *_) = _replay_forms(dash.client.get(view).text)
    row = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay",
        {"event_id": event_id, "action": "failed", "user": "garbage"},
        page=view,
    )
    assert "action=failed" in row.headers["location"]
    assert "garbage" not in row.headers["location"]


def test_replay_of_a_change_that_a_newer_one_overtook_stays_stale(dash: Dash) -> None:
    dash.sign_in()
    holder, claimant = next_id("005"), next_id("005")
    dash.post_message(
        make_notification(
            user_id=holder, Username="v@acme.com", SystemModstamp="2026-11-29T10:00:00.000Z"
        ),
        make_notification(
            user_id=claimant, Username="b@acme.com", SystemModstamp="2026-11-29T10:00:00.000Z"
        ),
    )
    # the claimant's claim of a username held by another user fails
    dash.post_message(
        make_notification(
            user_id=claimant, Username="v@acme.com", SystemModstamp="2026-11-29T10:02:00.000Z"
        )
    )
    (event_id,) = _replay_forms(_log(dash))
    # a newer change of the claimant arrives and applies
    dash.post_message(
        make_notification(
            user_id=claimant, Username="c@acme.com", SystemModstamp="2026-11-29T10:05:00.000Z"
        )
    )
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay",
        {"event_id": event_id},
        page=f"/organizations/{dash.org}/provisioning-log",
    )
    assert "flash=replayed" in response.headers["location"]
    newest = _log(dash).split("<tbody>")[1].split("<tr")[1]
    assert ">stale</span>" in newest
    users = dash.client.get(f"/organizations/{dash.org}/users").text
    assert "c@acme.com" in users and "b@acme.com" not in users


def test_replay_of_an_unknown_or_other_organizations_event_changes_nothing(
    make_dash: MakeDash,
) -> None:
    dash, other = make_dash(), make_dash()
    dash.sign_in()
    other.post_message(make_notification(IsActive=None))
    with dash.engine.connect() as conn:
        (other_event,) = conn.execute(text("SELECT event_id FROM failed_notification")).one()
    before = _log(dash)
    for event_id in (str(other_event), "999999", "x"):
        response = dash.post_form(
            f"/organizations/{dash.org}/provisioning-log/replay",
            {"event_id": event_id},
            page=f"/organizations/{dash.org}/provisioning-log",
        )
        assert "flash=replay-unknown" in response.headers["location"]
    assert _log(dash).count("<tr") == before.count("<tr")


def test_replay_without_a_csrf_token_is_refused(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(make_notification(IsActive=None))
    (event_id,) = _replay_forms(_log(dash))
    response = dash.client.post(
        f"/organizations/{dash.org}/provisioning-log/replay",
        data={"event_id": event_id},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert _log(dash).count(">failed</span>") == 1


def test_a_row_names_the_agent_of_its_salesforce_user_while_it_exists(dash: Dash) -> None:
    dash.sign_in()
    kept, gone = next_id("005"), next_id("005")
    dash.post_message(
        make_notification(user_id=kept, Name="Nia <Named>"), make_notification(user_id=gone)
    )
    dash.post_message(
        make_notification(
            user_id=gone, Name="Ola <Gone>", IsActive="false", SystemModstamp="2026-11-21T10:00:00Z"
        )
    )

    def rows() -> dict[str, str]:
        return {
            m.group(1): m.group(0)
            for m in re.finditer(r'<a href="[^"]*/users/(005\w+)">.*?</a>', _log(dash), re.S)
        }

    assert "Nia &lt;Named&gt;<br><code>" in rows()[kept]  # the name, escaped, above the id
    # deprovisioned: the Name its tombstone kept (every row of that user)
    assert "Ola &lt;Gone&gt;<br><code>" in rows()[gone]
    # a tombstone written before migration 0016 kept no name: the id alone
    with dash.engine.begin() as connection:
        connection.execute(text("UPDATE tombstone SET name = NULL"))
    assert rows()[gone].endswith(f"><code>{gone}</code></a>")


def test_replay_failed_replays_the_views_failures_once_and_reports_the_counts(
    dash: Dash,
) -> None:
    dash.sign_in()
    fixed, broken, other = next_id("005"), next_id("005"), next_id("005")
    dash.post_message(
        make_notification(user_id=fixed, IsActive=None, Name="Fixed Later"),
        make_notification(user_id=broken, IsActive=None),
        make_notification(user_id=other, Name="Fine"),
    )
    everything = _log(dash)
    assert "set Action to" in everything and "Replay 2 failed" not in everything
    failed_row = next(r for r in everything.split("<tr")[1:] if fixed in r)
    assert "Fixed Later" in failed_row  # no agent yet: the name its notification carried
    with dash.engine.begin() as conn:  # as if a fixed mapping could read it now
        (event,) = conn.execute(
            text(
                "SELECT f.event_id FROM failed_notification f"
                " JOIN provisioning_event e ON e.id = f.event_id WHERE e.crm_id = :crm"
            ),
            {"crm": fixed},
        ).one()
    _make_active(dash, int(event))
    failed_view = _log(dash, action="failed")
    assert "2 failed notifications in this view have not been replayed yet" in failed_view
    assert "Replay 2 failed" in failed_view
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        {"user": "", "from": "", "to": "", "outcome": ""},
        page=f"/organizations/{dash.org}/provisioning-log?action=failed",
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert "action=failed" in location and "replayed=2" in location
    after = dash.client.get(location).text
    assert "Replayed 2 failed notifications: 1 applied, 1 failed again, 0 changed nothing" in after
    assert '<p class="flash" role="status">Replayed 2' in after  # something applied: green
    # each row says where its decision came from (newcomer finding)
    assert '<span class="hint">Replay</span>' in after
    assert '<span class="hint">Outbound Message</span>' in after
    # the one that failed again is offered only with those of earlier replays
    assert "not been replayed yet" not in after
    assert "1 failed again when replayed earlier" in after
    assert "Replay 1 that failed again" in after
    again = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        {"again": "1"},
        page=f"/organizations/{dash.org}/provisioning-log?action=failed",
    )
    # nothing applied, it failed again: the report is in the problem colours (newcomer)
    report = dash.client.get(again.headers["location"]).text
    assert (
        '<p class="flash problem" role="status">Replayed 1 failed notification: 0 applied' in report
    )
    users_page = dash.client.get(f"/organizations/{dash.org}/users").text
    assert "Fixed Later" in users_page  # the agent now exists
    # counts in the address are read as integers only
    odd = _log(dash, action="failed", replayed="<b>2</b>", applied="1")
    assert "Replayed" not in odd and "<b>2</b>" not in odd


def _make_active(dash: Dash, event: int) -> None:
    from receiver.db import transaction
    from receiver.provisioning_tables import FailedNotification

    with transaction(dash.engine) as session:
        kept = session.get(FailedNotification, event)
        assert kept is not None
        kept.fields = {**kept.fields, "IsActive": "true"}
        session.add(kept)


def test_replay_failed_needs_the_csrf_token_and_stays_in_the_organization(
    make_dash: MakeDash,
) -> None:
    dash, other = make_dash(), make_dash()
    dash.sign_in()
    other.post_message(make_notification(IsActive=None))
    refused = dash.client.post(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        data={"user": ""},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        {"user": "", "from": "", "to": "", "outcome": ""},
        page=f"/organizations/{dash.org}/provisioning-log",
    )
    assert "replayed=0" in response.headers["location"]
    with other.engine.connect() as conn:
        replays = conn.execute(
            text("SELECT count(*) FROM provisioning_message WHERE source = 'replay'")
        ).scalar_one()
    assert replays == 0


def test_replay_failed_while_another_batch_runs_replays_nothing_and_says_so(dash: Dash) -> None:
    from receiver.jobs import JobKind, start_job

    dash.sign_in()
    dash.post_message(make_notification(IsActive=None))
    start_job(dash.engine, dash.org, JobKind.REPLAY)  # a batch started elsewhere
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        {"user": "", "from": "", "to": "", "outcome": ""},
        page=f"/organizations/{dash.org}/provisioning-log?action=failed",
    )
    after = dash.client.get(response.headers["location"]).text
    assert "Another replay of this organization" in after and 'role="alert"' in after
    assert "1 failed notification in this view has not been replayed yet" in after


def test_replay_failed_is_offered_but_refused_while_provisioning_is_off(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(make_notification(IsActive=None))
    with dash.engine.begin() as conn:
        conn.execute(text("UPDATE organization SET enabled = :off"), {"off": False})
    page = _log(dash, action="failed")
    assert "Agent Auto Provision is off for this organization" in page
    assert re.search(r"<button type=\"submit\" disabled>Replay 1 failed</button>", page)
    response = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay-failed",
        {"user": "", "from": "", "to": "", "outcome": ""},
        page=f"/organizations/{dash.org}/provisioning-log?action=failed",
    )
    assert "flash=replay-off" in response.headers["location"]
    after = dash.client.get(response.headers["location"]).text
    assert "Nothing was replayed: Agent Auto Provision is off" in after
    assert "1 failed notification in this view has not been replayed yet" in after
    # a row's Replay runs even so, and says it was only logged as ignored (attack finding:
    # it read as a success)
    (event_id,) = _replay_forms(after)
    row = dash.post_form(
        f"/organizations/{dash.org}/provisioning-log/replay",
        {"event_id": event_id, "action": "failed"},
        page=f"/organizations/{dash.org}/provisioning-log?action=failed",
    )
    assert "flash=replay-ignored" in row.headers["location"]
    assert "only logged as ignored" in dash.client.get(row.headers["location"]).text
    # ... and the failure still waits for a replay once the feature is on (newcomer
    # finding: it dropped out of every count)
    with dash.engine.begin() as conn:
        conn.execute(text("UPDATE organization SET enabled = :on"), {"on": True})
    assert "1 failed notification in this view has not been replayed yet" in _log(
        dash, action="failed"
    )


def test_forged_counts_in_the_address_show_no_report(dash: Dash) -> None:
    dash.sign_in()
    forged = _log(dash, action="failed", replayed="0", applied="5", again="7")
    assert "Replayed" not in forged


def test_a_name_in_the_user_filter_stays_in_the_box_and_points_to_search(dash: Dash) -> None:
    """Newcomer finding: the log's rows name users, so admins type a name; the filter
    takes an id, and says where a name is found, keeping what was typed."""
    dash.sign_in()
    dash.post_message(make_notification(Name="Jürgen Groß"))
    html = _log(dash, user="Jürgen")
    assert 'name="user" type="text" value="Jürgen"' in html
    assert "find a user by name with Search on the Users page" in html
    assert ">created</span>" in html  # the filter is left out, not an empty log
