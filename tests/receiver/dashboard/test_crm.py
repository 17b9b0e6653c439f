"""Company settings > CRM (receiver.dashboard.crm)."""

from __future__ import annotations

from receiver.organizations import webhook_path
from tests.factories import make_notification, make_outbound_message
from tests.receiver.dashboard._harness import Dash, MakeDash


def test_never_before_the_first_message(dash: Dash) -> None:
    dash.sign_in()
    html = dash.client.get(f"/organizations/{dash.org}/settings/crm").text
    assert '<dt id="last-message-label">Last message</dt>' in html
    assert "<dd>never</dd>" in html
    assert "Troubleshooting" in html and "Modify a user" in html
    assert dash.token not in html
    assert "Not connected" in html


def test_last_message_notification_and_rejection(dash: Dash) -> None:
    dash.sign_in()
    dash.post_message(make_notification(IsActive=None))
    other_org = make_outbound_message([make_notification()], organization_id="00D000000000009EAA")
    response = dash.client.post(
        webhook_path(dash.org),
        params={"token": dash.token},
        content=other_org,
        headers={"content-type": "text/xml"},
    )
    assert response.status_code == 403
    html = dash.client.get(f"/organizations/{dash.org}/settings/crm").text
    assert '<time aria-labelledby="last-message-label" datetime="2026-11-29T12:00:00Z">' in html
    assert ">failed<" in html and "IsActive" in html
    assert "is not the Salesforce org registered" in html
    assert dash.token not in html
    assert "?token=…" in html


def test_a_webhook_url_on_another_address_than_the_page_is_pointed_out(
    make_dash: MakeDash,
) -> None:
    from receiver.dashboard.crm import other_origin

    assert (
        other_origin("http://127.0.0.1:8071", "http://127.0.0.1:8000/") == "http://127.0.0.1:8071"
    )
    assert other_origin("https://Agents.Example.com", "https://agents.example.com:443/") is None
    elsewhere = make_dash()  # its organization's webhook is on http://127.0.0.1:8000
    elsewhere.sign_in()
    html = elsewhere.client.get(f"/organizations/{elsewhere.org}/settings/crm").text
    assert "webhook URL's <code>http://127.0.0.1:8000</code>" in html
    here = make_dash(base_url="http://127.0.0.1:8000")  # the page served from that address
    here.sign_in()
    html = here.client.get(f"/organizations/{here.org}/settings/crm").text
    assert "served from another address" not in html
