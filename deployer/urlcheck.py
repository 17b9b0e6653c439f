"""Judge a webhook URL from the URL alone: no DNS lookup, no network probe.

Salesforce must reach the Outbound Message endpoint from the internet, so a real deploy
refuses loopback, private, link-local and other non-global addresses and names that only
resolve locally; plain ``http`` is a warning (the token would travel in clear). Outbound
Messages may only use ports 80, 443 and 1024-66535 (Salesforce Help, "Outbound Messaging
Security":
https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_setting_up.htm).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from sf_metadata.errors import Problem, Setting

__all__ = ["check_webhook_url", "redact_url"]

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")


def redact_url(url: str) -> str:
    """``url`` without its query string (the token is in it), for messages and logs."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def check_webhook_url(url: str, *, real_deploy: bool) -> tuple[list[str], list[str]]:
    """Return ``(problems, warnings)`` about ``url`` as an Outbound Message endpoint.

    ``real_deploy`` False (a dry run) turns the reachability problems into warnings.
    Messages never include the query string.
    """
    problems: list[str] = []
    warnings: list[str] = []
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(
            Problem(
                f"Webhook URL {shown!r} (Outbound Message endpointUrl) is not an http(s) URL: "
                "fix the organization's base URL",
                Setting.BASE_URL,
            )
        )
        return problems, warnings
    unreachable: list[str] = []
    host = parts.hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if not address.is_global:
            unreachable.append(f"its host {host} is a loopback, private or reserved address")
    elif host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host:
        unreachable.append(f"its host {host} is a local name")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not (port in (80, 443) or 1024 <= port <= 66535):
        unreachable.append(f"port {port} is not allowed (80, 443 or 1024-66535)")
    for reason in unreachable:
        line = Problem(
            f"Salesforce cannot reach the webhook URL {shown} (Outbound Message endpointUrl): "
            f"{reason}; the organization needs a public base URL",
            Setting.BASE_URL,
        )
        (problems if real_deploy else warnings).append(line)
    if parts.scheme == "http":
        warnings.append(
            f"The webhook URL {shown} (Outbound Message endpointUrl) uses plain http: the "
            "token and User data travel unencrypted; use an https base URL"
        )
    return problems, warnings
