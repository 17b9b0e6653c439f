"""Signing in to the dashboard: the session cookie, the throttle of wrong passwords.

**Cookie.** ``aap_session`` (``__Host-aap_session`` when the public URL is https: then
``Secure``, ``Path=/``, no ``Domain``), ``HttpOnly``, ``SameSite=Lax``. Its value is a
random token (``secrets.token_urlsafe(32)``) signed with itsdangerous under the dashboard
key; the store keeps only the token's SHA-256 in ``dashboard_session``, with the sign-in
time and the last use. A session ends when it is unused for the idle lifetime (default
60 minutes), at the absolute lifetime after sign-in (default 12 hours), at sign-out, when
the operator's password changes or the operator is removed. Every sign-in makes a new
token (no session fixation).

**Throttle** of wrong passwords: ``receiver.dashboard.throttle`` (per username and
address, per address, per username across addresses, per trusted browser; in the store).
Ended and outlived sessions are pruned off the request path (:func:`prune_sessions`,
run by ``receiver.maintenance``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, or_
from sqlmodel import Session, col, select
from starlette.responses import Response

from receiver.dashboard.cookies import clear_private_cookie
from receiver.dashboard.operators import verify_password
from receiver.dashboard.tables import Operator, OperatorOrganization, OperatorSession
from receiver.dashboard.throttle import ADDRESS_LIMIT, USERNAME_LIMIT, WINDOW

__all__ = [
    "ADDRESS_LIMIT",
    "USERNAME_LIMIT",
    "WINDOW",
    "SessionCheck",
    "Viewer",
    "clear_session_cookie",
    "cookie_name",
    "end_session",
    "load_viewer",
    "prune_sessions",
    "record_check",
    "check_password",
    "start_session",
    "sign_token",
    "touch_interval",
    "unsign_token",
]

#: The last use is written at most this often (one write a minute per signed-in browser),
#: and at least twice per idle lifetime (see :func:`touch_interval`).
_TOUCH_EVERY = timedelta(seconds=60)


def touch_interval(idle: timedelta) -> timedelta:
    """How stale the recorded last use may get before a request rewrites it: a minute, or
    half the idle lifetime when that is shorter, so a session in use never reaches its
    idle lifetime between two writes."""
    return min(_TOUCH_EVERY, idle / 2)


_SALT = "aap-session"


def cookie_name(secure: bool) -> str:
    """``__Host-aap_session`` over https, else ``aap_session``."""
    return "__Host-aap_session" if secure else "aap_session"


def clear_session_cookie(response: Response, secure: bool) -> None:
    """Clear the session cookie with the attributes it was set with: a browser ignores a
    ``__Host-`` cookie without ``Secure`` (RFC 6265bis), so a bare ``delete_cookie`` left
    the dead cookie in place behind https."""
    clear_private_cookie(response, cookie_name(secure), path="/", secure=secure)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def sign_token(secret: bytes, token: str) -> str:
    """The cookie value for ``token``."""
    return URLSafeSerializer(secret, salt=_SALT).dumps(token)


def unsign_token(secret: bytes, value: str | None) -> str | None:
    """The token of a cookie value, or ``None`` when it is missing or forged."""
    if not value or len(value) > 200:
        return None
    try:
        token = URLSafeSerializer(secret, salt=_SALT).loads(value)
    except BadSignature:
        return None
    return token if isinstance(token, str) and token else None


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in operator of a request. ``organizations`` is ``None`` for an operator of
    every organization; ``session_token`` is the cookie's token (for the CSRF token)."""

    operator_id: int
    username: str
    organizations: frozenset[str] | None
    session_token: str

    def can_access(self, organization_id: str) -> bool:
        """True if this operator manages ``organization_id`` (registered or not)."""
        return self.organizations is None or organization_id in self.organizations


@dataclass(frozen=True, slots=True)
class SessionCheck:
    """What :func:`load_viewer` found: the ``viewer`` of a live session, else ``why`` it
    is not one (``None`` for an unknown token); ``write`` is what the caller must then
    record in a write transaction with :func:`record_check` (``"touch"``: the last use;
    ``"end"``: the session outlived a lifetime), or ``None``."""

    viewer: Viewer | None
    why: str | None
    write: str | None = None


def load_viewer(
    session: Session,
    *,
    token: str,
    now: datetime,
    idle: timedelta,
    absolute: timedelta,
) -> SessionCheck:
    """Check the session of ``token`` (reads only: run it in a read-only transaction, so
    page views do not queue behind the store's writers)."""
    row = session.get(OperatorSession, _sha(token))
    if row is None:
        return SessionCheck(None, None)
    if row.ended_at is not None:
        return SessionCheck(None, row.end_reason or "signed out")
    if now - row.created_at >= absolute:
        return SessionCheck(None, "expired", "end")
    if now - row.last_seen_at >= idle:
        return SessionCheck(None, "idle", "end")
    operator = session.get(Operator, row.operator_id)
    if operator is None:  # removed: its sessions were deleted too; belt and braces
        return SessionCheck(None, "operator removed")
    orgs: frozenset[str] | None = None
    if not operator.all_organizations:
        orgs = frozenset(
            session.exec(
                select(OperatorOrganization.organization_id).where(
                    OperatorOrganization.operator_id == operator.id
                )
            ).all()
        )
    assert operator.id is not None
    touch = "touch" if now - row.last_seen_at >= touch_interval(idle) else None
    return SessionCheck(Viewer(operator.id, operator.username, orgs, token), None, touch)


def record_check(session: Session, *, token: str, check: SessionCheck, now: datetime) -> None:
    """Write what ``check`` asks for: the last use, or the end of an outlived session."""
    row = session.get(OperatorSession, _sha(token))
    if row is None or row.ended_at is not None:
        return
    if check.write == "end":
        row.ended_at = now
        row.end_reason = check.why
    elif check.write == "touch":
        row.last_seen_at = max(row.last_seen_at, now)
    session.add(row)


def end_session(session: Session, *, token: str, now: datetime, reason: str = "signed out") -> None:
    """End the session of ``token`` (sign-out); nothing for an unknown one."""
    row = session.get(OperatorSession, _sha(token))
    if row is not None and row.ended_at is None:
        row.ended_at = now
        row.end_reason = reason
        session.add(row)


def check_password(session: Session, *, username: str, password: str) -> int | None:
    """The operator id if the password is right, else ``None`` (argon2 work: run it
    outside a write transaction)."""
    operator = verify_password(session, username=username, password=password)
    return operator.id if operator is not None else None


def start_session(
    session: Session, *, operator_id: int, username: str, address: str, now: datetime
) -> str:
    """Create a session for the operator; returns the new random token. (A right
    password's failure counts are settled by ``throttle.forgive_attempt``.)"""
    del username
    token = secrets.token_urlsafe(32)
    session.add(
        OperatorSession(
            id=_sha(token),
            operator_id=operator_id,
            created_at=now,
            last_seen_at=now,
            client_address=address[:64] or None,
        )
    )
    return token


def prune_sessions(
    session: Session, *, now: datetime, idle: timedelta, absolute: timedelta, limit: int
) -> int:
    """Delete up to ``limit`` sessions that can never be used again: ended (sign-out,
    password change) or past their idle or absolute lifetime at ``now``; returns how
    many. A browser still holding such a cookie is sent to sign in, as before."""
    ids = list(
        session.exec(
            select(OperatorSession.id)
            .where(
                or_(
                    col(OperatorSession.ended_at).is_not(None),
                    col(OperatorSession.last_seen_at) <= now - idle,
                    col(OperatorSession.created_at) <= now - absolute,
                )
            )
            .limit(limit)
        ).all()
    )
    if ids:
        session.execute(delete(OperatorSession).where(col(OperatorSession.id).in_(ids)))
    return len(ids)
