"""Every organization page has exactly one link for each menu name of CONTRACT section 5
(`Users`, `Features`, `CRM`, `Provisioning log`, `Reconcile`): a browser locator by role
and name matches a substring, so a second link whose text holds a menu name (a notice's
"CRM", a "Back to Reconcile") would make the menu's link ambiguous."""

from __future__ import annotations

import re
from html import unescape

import pytest

from tests.factories import make_notification, sf_id
from tests.receiver.dashboard._harness import Dash

MENU = ("Users", "Features", "CRM", "Provisioning log", "Reconcile")
USER = sf_id("005", 777)


def _link_texts(html: str) -> list[str]:
    return [
        unescape(re.sub(r"<[^>]+>", "", text)).strip()
        for text in re.findall(r"<a\b[^>]*>(.*?)</a>", html, re.S)
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/users",
        f"/users/{USER}",
        "/features",
        "/provisioning-log",
        "/settings/crm",
        "/reconcile",  # no Salesforce connection: its notice links to the CRM page
        "/reconcile/plans/p1",
    ],
)
def test_each_menu_name_is_one_link(dash: Dash, path: str) -> None:
    dash.sign_in()
    dash.post_message(make_notification(USER, Name="Grace Hopper"))
    dash.add_plan("p1", status="planned")
    response = dash.client.get(f"/organizations/{dash.org}{path}")
    assert response.status_code == 200
    texts = _link_texts(response.text)
    for name in MENU:
        matching = [t for t in texts if name.lower() in t.lower()]
        assert matching == [name], (path, name, matching)
