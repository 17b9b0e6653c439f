"""Which hosts a Salesforce URL may name (pure, a leaf module): the login URL an admin
types or picks (:func:`accepted_login_url`) and the instance URL a token answer names
(:func:`accepted_instance_url`). A token is only ever sent to a host one of them accepted.

Sources: Salesforce Help "OAuth Endpoints" (login.salesforce.com, test.salesforce.com, a My
Domain ``https://MyCompany.my.salesforce.com``, sandboxes
``MyDomainName--SandboxName.sandbox.my.salesforce.com``), reference
``salesforce-facts-2026.md``; use ``*.my.salesforce.com`` rather than
``*.lightning.force.com`` for API calls (reference ``metadata-deploy-bugs.md``).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from sf_metadata.errors import UsageError

__all__ = ["accepted_instance_url", "accepted_login_url"]

_SALESFORCE_HOSTS = ("login.salesforce.com", "test.salesforce.com")
_MY_DOMAIN_SUFFIX = ".my.salesforce.com"
#: Every Salesforce instance host (My Domains, sandboxes, legacy pods such as
#: ``na1.salesforce.com``) is under this suffix.
_INSTANCE_SUFFIX = ".salesforce.com"

#: One DNS label of a login host: ASCII letters, digits and inner hyphens (RFC 1123).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _plain_host(host: str) -> bool:
    """True for an IP address or a host name of plain DNS labels: the host that
    ``urlsplit`` reads is then the one requests (urllib3) and browsers connect to. A
    backslash, a percent sign, a non-ASCII letter or an empty label could read as another
    host to one of them (``https://evil.example\\.my.salesforce.com`` reaches
    ``evil.example``)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return all(_LABEL.fullmatch(label) for label in host.split("."))
    return True


def _origin(url: str) -> tuple[str, str, int] | None:
    text = url.strip()
    if not text.isprintable() or any(c.isspace() or c == "\\" for c in text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if not _plain_host(host):
        return None
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, host, port or default


def _salesforce_host(host: str) -> bool:
    return host in _SALESFORCE_HOSTS or (
        host.endswith(_MY_DOMAIN_SUFFIX) and len(host) > len(_MY_DOMAIN_SUFFIX)
    )


def _allowed(extra: str) -> set[tuple[str, str, int]]:
    return {o for o in (_origin(u) for u in extra.split(",") if u.strip()) if o}


def _origin_url(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def accepted_login_url(url: str, extra: str = "") -> str:
    """The origin of ``url`` (``https://host[:port]``) when it is an accepted login URL:
    https on ``login.salesforce.com``, ``test.salesforce.com``, ``*.my.salesforce.com``
    (which holds ``*.sandbox.my.salesforce.com``) on port 443, or an origin listed in
    ``extra`` (``AGENT_PROVISION_SALESFORCE_LOGIN_URLS``: comma-separated, compared by
    scheme, host and port). Raises :class:`UsageError` otherwise."""
    origin = _origin(url)
    if origin is not None and (
        origin in _allowed(extra)
        or (origin[0] == "https" and origin[2] == 443 and _salesforce_host(origin[1]))
    ):
        return _origin_url(origin)
    raise UsageError(
        f"{url.strip()[:200]!r} is not a Salesforce login URL: use https://login.salesforce.com, "
        "https://test.salesforce.com or your My Domain (https://acme.my.salesforce.com)"
    )


def accepted_instance_url(url: str, extra: str = "") -> str:
    """The origin of ``url`` when it may be an org's instance URL (the ``instance_url``
    of a token answer, where every API call and its token go): https on port 443 under
    ``.salesforce.com``, or any scheme and port on a host of an origin listed in ``extra``
    (as for :func:`accepted_login_url`: a host the operator trusts, such as a stand-in
    Salesforce on loopback whose API answers on another port than its login). Raises
    :class:`UsageError` otherwise."""
    origin = _origin(url)
    if origin is not None and (
        origin[1] in {host for _, host, _ in _allowed(extra)}
        or (origin[0] == "https" and origin[2] == 443 and origin[1].endswith(_INSTANCE_SUFFIX))
    ):
        return _origin_url(origin)
    raise UsageError(
        f"Salesforce named {url.strip()[:200]!r} as the org's instance URL, which is not a "
        "Salesforce host"
    )
