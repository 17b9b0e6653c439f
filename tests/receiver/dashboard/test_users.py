"""The Users page and one agent's page (receiver.dashboard.users / directory)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

import pytest

from receiver.agent_search import insert_agents
from receiver.db import transaction
from tests.factories import make_notification, next_id, sf_id
from tests.receiver.dashboard._harness import Dash

_ROW = re.compile(r"<tr>\s*<td><a href=\"[^\"]*/users/(\w+)\">(.*?)</a></td>", re.S)


def _names(html: str) -> list[str]:
    return [unescape(m.group(2)) for m in _ROW.finditer(html)]


def _users(d: Dash, **params: str) -> str:
    response = d.client.get(f"/organizations/{d.org}/users", params=params)
    assert response.status_code == 200
    return response.text


def _seed(d: Dash, n: int, *, name: str = "Agent {i:04d}") -> None:
    """``n`` agents straight into the store (names zero-padded so they sort by number)."""
    now = datetime(2026, 11, 29, tzinfo=UTC)
    rows = []
    for i in range(n):
        crm = sf_id("005", 900_000 + i)
        rows.append(
            {
                "id": f"{900_000 + i:032x}",
                "organization_id": d.org,
                "crm_id": crm,
                "username": f"user{i:04d}@acme.com",
                "username_key": f"user{i:04d}@acme.com",
                "system_modstamp": now,
                "data": {
                    "name": name.format(i=i),
                    "crmId": crm,
                    "disabled": False,
                    "inboundEnabled": True,
                    "crm": {"callCenterId": None},
                },
                "created_at": now,
                "updated_at": now,
            }
        )
    with transaction(d.engine) as session:
        insert_agents(session, rows)


def test_the_table_has_the_contract_columns_and_cells(dash: Dash) -> None:
    dash.sign_in()
    active = make_notification(Name="Ann Active")
    no_center = make_notification(Name="Bob NoCenter", CallCenterId=None)
    assert dash.post_message(active, no_center).status_code == 200
    html = _users(dash)
    for header in ("Name", "Username", "Status", "Inbound", "Call center", "Last change"):
        assert f'<th scope="col">{header}</th>' in html
    rows = html.split("<tr>")[2:]
    ann = next(r for r in rows if "Ann Active" in r)
    bob = next(r for r in rows if "Bob NoCenter" in r)
    assert ">Enabled<" in ann and "<td>Yes</td>" in ann
    assert ">Disabled<" in bob and "<td>No</td>" in bob
    assert active["fields"]["Username"] in ann


def test_a_deprovisioned_user_is_no_longer_listed(dash: Dash) -> None:
    dash.sign_in()
    user = next_id("005")
    dash.post_message(make_notification(user_id=user, Name="Gone Soon"))
    assert "Gone Soon" in _users(dash)
    dash.post_message(
        make_notification(
            user_id=user,
            Name="Gone Soon",
            IsActive="false",
            SystemModstamp="2026-11-21T10:00:00.000Z",
        )
    )
    assert "Gone Soon" not in _users(dash)
    page = dash.client.get(f"/organizations/{dash.org}/users/{user}")
    assert page.status_code == 200
    assert "Deprovisioned" in page.text
    # its tombstone says who it was
    assert "Gone Soon" in page.text.split("<h1>")[1].split("</h1>")[0]


def test_search_is_a_case_insensitive_substring_of_name_or_username(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(
        make_notification(Name="Maria Lopez", Username="mlopez@acme.com"),
        make_notification(Name="John Smith", Username="jsmith@acme.com"),
    )
    assert _names(_users(dash, q="LOPEZ")) == ["Maria Lopez"]
    assert _names(_users(dash, q="jsmi")) == ["John Smith"]
    assert _names(_users(dash, q="ACME.COM")) == ["John Smith", "Maria Lopez"]
    assert _names(_users(dash, q="nobody")) == []


@pytest.mark.parametrize("q", ["%", "_", "\\", "' OR 1=1 --", '"; DROP TABLE agent; --'])
def test_sql_wildcards_and_injection_are_plain_text(dash: Dash, q: str) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="Plain Name"))
    html = _users(dash, q=q)
    assert _names(html) == []
    assert "No agent" in html
    assert _names(_users(dash)) == ["Plain Name"]  # the table is still there


def test_a_10000_character_search_is_cut_and_said(dash: Dash) -> None:
    dash.sign_in()
    html = _users(dash, q="a" * 10_000)
    assert "cut to its first 200 characters" in html
    assert "a" * 201 not in html


def test_html_in_the_search_and_in_a_name_is_escaped(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(make_notification(Name="<script>alert(1)</script>"))
    html = _users(dash)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    html = _users(dash, q="<img src=x onerror=alert(1)>")
    assert "<img" not in html


def test_bidirectional_controls_in_a_name_are_shown_not_obeyed(dash: Dash) -> None:
    """Attack finding: a Salesforce user may edit their own Name; with a right-to-left
    override (U+202E) ``\u202emoc.elpmaxe@nimda`` read as ``admin@example.com`` on every
    page. Overrides, embeddings and isolates are shown as their code point; the letters
    of a right-to-left script (no control characters) are shown as they are."""
    dash.sign_in()
    user = next_id("005")
    spoof = "\u202emoc.elpmaxe@nimda"
    dash.post_message(make_notification(user_id=user, Name=spoof, Username="spoof@acme.com"))
    dash.post_message(make_notification(Name="\u05d3\u05e0\u05d4 \u05db\u05d4\u05df"))
    pages = [
        _users(dash),
        dash.client.get(f"/organizations/{dash.org}/users/{user}").text,
        dash.client.get(f"/organizations/{dash.org}/provisioning-log").text,
        _users(dash, q="\u2067x\u2069"),
    ]
    for html in pages:
        assert not any(c in html for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert "[U+202E]moc.elpmaxe@nimda" in pages[0] and "[U+202E]moc" in pages[1]
    assert "\u05d3\u05e0\u05d4 \u05db\u05d4\u05df" in pages[0]


def test_paging_shows_at_most_100_rows_with_next_and_previous(dash: Dash) -> None:
    dash.sign_in()
    _seed(dash, 250)
    first = _users(dash)
    names = _names(first)
    assert len(names) == 100 and names[0] == "Agent 0000" and names[-1] == "Agent 0099"
    assert ">Previous<" not in first
    after = re.search(r'href="([^"]*after=[^"]*)">Next<', first)
    assert after is not None
    second = dash.client.get(unescape(after.group(1))).text
    assert _names(second)[0] == "Agent 0100"
    after = re.search(r'href="([^"]*after=[^"]*)">Next<', second)
    assert after is not None
    third = dash.client.get(unescape(after.group(1))).text
    assert _names(third) == [f"Agent {i:04d}" for i in range(200, 250)]
    assert ">Next<" not in third
    before = re.search(r'href="([^"]*before=[^"]*)">Previous<', third)
    assert before is not None
    back = dash.client.get(unescape(before.group(1))).text
    assert _names(back) == [f"Agent {i:04d}" for i in range(100, 200)]
    assert "250 agents" in first
    # where each page stands (newcomer finding: every page said "100 shown")
    assert "1–100 shown" in first and "101–200 shown" in second and "201–250 shown" in third
    assert "101–200 shown" in back


def test_paging_keeps_the_search(dash: Dash) -> None:
    dash.sign_in()
    _seed(dash, 150, name="Team {i:04d}")
    first = _users(dash, q="team")
    link = re.search(r'href="([^"]*)">Next<', first)
    assert link is not None and "q=team" in link.group(1)


def test_a_malformed_cursor_is_the_first_page(dash: Dash) -> None:
    dash.sign_in()
    _seed(dash, 3)
    assert _names(_users(dash, after="!!not-a-cursor")) == [
        "Agent 0000",
        "Agent 0001",
        "Agent 0002",
    ]


def test_the_agent_page_shows_fields_sessions_and_timeline(dash: Dash) -> None:
    dash.sign_in()
    user = next_id("005")
    dash.post_message(make_notification(user_id=user, Name="Tina Timeline", Custom__c="blue"))
    dash.post_message(
        make_notification(
            user_id=user,
            Name="Tina Timeline",
            CallCenterId=None,
            Custom__c="blue",
            SystemModstamp="2026-11-21T10:00:00.000Z",
        )
    )
    page = dash.client.get(f"/organizations/{dash.org}/users/{user[:15]}")  # 15 characters too
    assert page.status_code == 200
    assert f"Salesforce user <code>{user}</code>" in page.text  # under the Name, as for the gone
    html = page.text
    assert (
        "Tina Timeline" in html
        and "crm.callCenterId" in html
        and "crm.customFields.Custom__c" in html
    )
    assert "no call center" in html  # why is this agent disabled?
    assert html.index("updated") < html.index("created")  # newest first
    assert "No sessions." in html


def test_a_user_whose_first_change_failed_shows_its_name_and_the_reason(dash: Dash) -> None:
    dash.sign_in()
    user = next_id("005")
    dash.post_message(make_notification(user_id=user, Name="Fay <Failed>", IsActive=None))
    html = dash.client.get(f"/organizations/{dash.org}/users/{user}").text
    h1 = html.split("<h1>")[1].split("</h1>")[0]
    assert "Fay &lt;Failed&gt;" in h1  # the kept Name, escaped
    # the id under it, as on a provisioned agent's page (newcomer: the two differed)
    assert f'<p class="hint">Salesforce user <code>{user}</code></p>' in html
    why = html.split('class="notice" role="status">')[1].split("</p>")[0]
    assert why.startswith("Not provisioned: its last change failed (") and "IsActive" in why
    assert "replay it from the Provisioning log" in why
    # linked: the log filtered to this user's failures (newcomer finding)
    assert f"provisioning-log?action=failed&amp;user={user}\">this user's failures</a>" in why
    # once a later change provisions it, the page is the agent's
    dash.post_message(
        make_notification(user_id=user, Name="Fay Fixed", SystemModstamp="2026-11-21T10:00:00.000Z")
    )
    fixed = dash.client.get(f"/organizations/{dash.org}/users/{user}").text
    assert "Fay Fixed" in fixed.split("<h1>")[1] and "Not provisioned" not in fixed


def test_an_unknown_or_invalid_agent_gets_a_clear_404(dash: Dash) -> None:
    dash.sign_in()
    unknown = dash.client.get(f"/organizations/{dash.org}/users/{next_id('005')}")
    assert unknown.status_code == 404 and "User not found" in unknown.text
    # in the organization's menu, with the way back to its Users (newcomer finding)
    assert f'href="/organizations/{dash.org}/users">← All agents</a>' in unknown.text
    assert f'href="/organizations/{dash.org}/reconcile"' in unknown.text  # the menu
    invalid = dash.client.get(f"/organizations/{dash.org}/users/<script>")
    assert invalid.status_code == 404 and "<script>" not in invalid.text
    assert "not a Salesforce User id" in invalid.text


def test_the_users_page_has_the_switch(dash: Dash) -> None:
    dash.sign_in()
    html = _users(dash)
    assert 'role="switch" aria-label="Agent Auto Provision" aria-checked="true"' in html
    assert "Enabled</button>" in html


def test_the_timeline_names_the_reconcile_plan_of_a_reconcile_decision(dash: Dash) -> None:
    from receiver.reconcile.run import reconcile
    from tests.fake_salesforce import FakeSalesforce
    from tests.user_records import make_user_record

    dash.sign_in()
    fake = FakeSalesforce(dash.sf_org, [make_user_record(1)])
    result = reconcile(dash.engine, dash.org, fake.reader())
    assert result.status == "applied"
    page = dash.client.get(f"/organizations/{dash.org}/users/{sf_id('005', 1)}")
    assert page.status_code == 200
    plan_link = f'href="/organizations/{dash.org}/reconcile/plans/{result.plan_id}"'
    assert "reconcile plan" in page.text and plan_link in page.text


def test_the_agent_page_labels_each_field_with_its_salesforce_source(dash: Dash) -> None:
    dash.sign_in()
    user = next_id("005")
    dash.post_message(
        make_notification(user_id=user, Name="Lia Label", CallCenterId=None, Team__c="red")
    )
    html = dash.client.get(f"/organizations/{dash.org}/users/{user}").text
    rows = dict(
        (re.sub(r"<[^>]+>", "", dt.split("<small>")[0]).strip(), re.sub(r"<[^>]+>", "", dd).strip())
        for dt, dd in re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", html, re.S)
    )
    # The Users page's words, not JSON booleans; the JSON path and Salesforce field beside it.
    assert rows["Status"] == "Disabled" and rows["Inbound"] == "No"
    assert rows["Call center"] == "empty"
    assert rows["Team__c"] == "red" and rows["Salesforce user id"] == user
    assert "<code>crm.language</code> from <code>LanguageLocaleKey</code>" in html


def test_a_user_inactive_when_first_seen_is_never_provisioned_not_deprovisioned(
    dash: Dash,
) -> None:
    """Newcomer finding: such a user's page said 'Deprovisioned at ...'."""
    dash.sign_in()
    user = next_id("005")
    dash.post_message(make_notification(user_id=user, Name="Never Active", IsActive="false"))
    html = dash.client.get(f"/organizations/{dash.org}/users/{user}").text
    assert "Never provisioned: the user was inactive in Salesforce when first seen" in html
    assert "Deprovisioned at" not in html
