"""CSRF protection of the dashboard's forms (CONTRACT section 5: 403, nothing changed).

Two checks, both needed for every state-changing request (OWASP CSRF Prevention Cheat
Sheet, "Synchronizer Token Pattern" and "Verifying Origin With Standard Headers"):

1. **Where the request comes from.** ``Sec-Fetch-Site`` (Fetch Metadata, sent by every
   current browser) must be ``same-origin`` or ``none`` (typed or bookmarked); an ``Origin``
   header, when present, must be this site's origin (the request's own scheme and ``Host``,
   or the origin of ``AGENT_PROVISION_PUBLIC_URL``); ``Origin: null`` is refused. A request
   with neither header (old browser, script) falls through to the token check.
2. **A token in the form** (``csrf_token`` field): HMAC-SHA256 of the signed-in session's
   random token under the dashboard key, compared in constant time. It changes with every
   sign-in and dies with the session. Before sign-in the login form carries the HMAC of a
   random nonce kept in a short-lived cookie instead (login CSRF).

asgi-csrf (double-submit cookie middleware) was not used: the contract puts the
organization check (404) before the CSRF check (403), which a middleware running before
routing cannot do.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

__all__ = ["CROSS_SITE", "FIELD", "allowed_origin", "form_token", "origin_of", "request_problem"]

#: The hidden form field holding the token.
FIELD = "csrf_token"


#: What :func:`request_problem` says of a form sent from another site (the other problems
#: are a missing or wrong token: an expired form, or one a reload sent again).
CROSS_SITE = "the form was sent from another site"


def form_token(secret: bytes, purpose: str, value: str) -> str:
    """The token for ``value`` (a session token or a login nonce): 64 hex characters."""
    message = purpose.encode("ascii") + b"\0" + value.encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower-cased; ``None`` if it has none."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def allowed_origin(request: Request, extra: Iterable[str | None]) -> set[str]:
    """This site's origins: the request's own (scheme + Host header) and ``extra``."""
    origins = {o for o in extra if o}
    host = request.headers.get("host")
    if host:
        origins.add(f"{request.url.scheme}://{host.lower()}")
    return origins


def request_problem(
    request: Request, submitted: object, expected: str | None, origins: set[str]
) -> str | None:
    """Why the request must be refused, or ``None``. ``submitted`` is the form's field
    value; ``expected`` the token it must equal (``None``: no session, always refused)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return CROSS_SITE
    origin = request.headers.get("origin")
    if origin is not None and (origin == "null" or origin_of(origin) not in origins):
        return CROSS_SITE
    if origin is None and site is None:
        referer = request.headers.get("referer")
        if referer and origin_of(referer) not in origins:
            return CROSS_SITE
    if expected is None or not isinstance(submitted, str) or not submitted:
        return "the form has no security token"
    if not hmac.compare_digest(submitted.encode("utf-8"), expected.encode("ascii")):
        return "the form's security token is wrong or belongs to another session"
    return None
