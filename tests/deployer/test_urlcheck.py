"""The webhook URL judged from the URL alone (no DNS, no network)."""

from __future__ import annotations

import pytest

from deployer.urlcheck import check_webhook_url, redact_url

PATH = "/v2/features/agent-auto-provision/organizations/acme/integrations/provider/webhook"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "172.16.5.4",
        "169.254.1.1",
        "[::1]",
        "[fd00::1]",
        "localhost",
        "app.localhost",
        "printer.local",
        "intranet",
    ],
)
def test_unreachable_hosts_are_problems_for_a_real_deploy(host: str) -> None:
    problems, _ = check_webhook_url(f"https://{host}{PATH}?token=secret", real_deploy=True)
    assert len(problems) == 1
    assert "endpointUrl" in problems[0]
    assert "secret" not in problems[0]


def test_dry_run_only_warns() -> None:
    problems, warnings = check_webhook_url(
        f"http://127.0.0.1:8000{PATH}?token=s", real_deploy=False
    )
    assert problems == []
    assert any("loopback" in w for w in warnings)
    assert any("plain http" in w for w in warnings)


def test_public_https_is_fine_and_http_warns() -> None:
    url = f"https://hooks.example.com{PATH}?token=s"
    assert check_webhook_url(url, real_deploy=True) == ([], [])
    problems, warnings = check_webhook_url(f"http://hooks.example.com{PATH}", real_deploy=True)
    assert problems == [] and len(warnings) == 1


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com:22/x", "ftp://hooks.example.com/x", "hooks.example.com/x"]
)
def test_ports_and_schemes(url: str) -> None:
    problems, _ = check_webhook_url(url, real_deploy=True)
    assert len(problems) == 1


def test_redact_url_drops_the_token() -> None:
    assert redact_url("https://h.example.com/p?token=abc#f") == "https://h.example.com/p"
