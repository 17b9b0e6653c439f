"""Signing in to the dashboard: the session cookie, the throttle of wrong passwords.

**Cookie.** ``aap_session`` (``__Host-aap_session`` when the public URL is https: then
``Secure``, ``Path=/``, no ``Domain``), ``HttpOnly``, ``SameSite=Lax``. Its value is a
random token (``secrets.token_urlsafe(32)``) signed with itsdangerous under the dashboard
key; the store keeps only the token's SHA-256 in ``dashboard_session``, with the sign-in
time and the last use. A session ends when it is unused for the idle lifetime (default
60 minutes), at the absolute lifetime after sign-in (default 12 hours), at sign-out, when
the operator's password changes or the operator is removed. Every sign-in makes a new
token (no session fixation).

**Throttle** (OWASP Authentication Cheat Sheet, "Account lockout"): each wrong password
or unknown username is a row of ``dashboard_signin_failure`` for the username (sha256 of
the casefolded name: a password typed in the username field is never stored) and one for
the client address. With :data:`USERNAME_LIMIT` failures for that username, or
:data:`ADDRESS_LIMIT` from that address, in the last :data:`WINDOW`, sign-in is refused
(429) without checking the password, until the window has passed. The rows are in the
store, so the limit holds across ``serve --workers N`` and hosts; two workers checking at
the same instant can each let one more attempt through.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from receiver.dashboard.operators import verify_password
from receiver.dashboard.tables import Operator, OperatorOrganization, OperatorSession, SignInFailure

__all__ = [
    "ADDRESS_LIMIT",
    "USERNAME_LIMIT",
    "WINDOW",
    "SessionCheck",
    "Viewer",
    "cookie_name",
    "end_session",
    "load_viewer",
    "record_check",
    "check_password",
    "record_failure",
    "start_session",
    "throttled",
    "sign_token",
    "unsign_token",
]

USERNAME_LIMIT = 5
ADDRESS_LIMIT = 30
WINDOW = timedelta(minutes=15)
#: The last use is written at most this often (one write a minute per signed-in browser).
_TOUCH_EVERY = timedelta(seconds=60)
_SALT = "aap-session"


def cookie_name(secure: bool) -> str:
    """``__Host-aap_session`` over https, else ``aap_session``."""
    return "__Host-aap_session" if secure else "aap_session"


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
    touch = "touch" if now - row.last_seen_at >= _TOUCH_EVERY else None
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


def _failures(session: Session, kind: str, subject: str, since: datetime) -> int:
    query = select(func.count()).where(
        SignInFailure.kind == kind,
        SignInFailure.subject == subject,
        col(SignInFailure.at) > since,
    )
    return int(session.exec(query).one())


def throttled(session: Session, *, username: str, address: str, now: datetime) -> bool:
    """True if sign-in for ``username`` or from ``address`` is held (see module)."""
    since = now - WINDOW
    return (
        _failures(session, "username", _sha(username.strip().casefold()), since) >= USERNAME_LIMIT
        or _failures(session, "address", _sha(address), since) >= ADDRESS_LIMIT
    )


def check_password(session: Session, *, username: str, password: str) -> int | None:
    """The operator id if the password is right, else ``None`` (argon2 work: run it
    outside a write transaction)."""
    operator = verify_password(session, username=username, password=password)
    return operator.id if operator is not None else None


def record_failure(session: Session, *, username: str, address: str, now: datetime) -> None:
    """Count one wrong password for ``username`` and ``address``; prune their old rows."""
    subjects = (("username", _sha(username.strip().casefold())), ("address", _sha(address)))
    for kind, subject in subjects:
        session.execute(
            delete(SignInFailure).where(
                col(SignInFailure.kind) == kind,
                col(SignInFailure.subject) == subject,
                col(SignInFailure.at) <= now - WINDOW,
            )
        )
        session.add(SignInFailure(kind=kind, subject=subject, at=now))


def reserve_attempt(
    session: Session, *, username: str, address: str, now: datetime
) -> list[int] | None:
    """Count one sign-in attempt for ``username`` and ``address`` BEFORE its password is
    checked, in the caller's write transaction: ``None`` when either is already held (see
    module), else the ids of the two failure rows written (a correct password then calls
    :func:`forgive_attempt`). Checking and counting in one serialized transaction is what
    makes the limit hold against concurrent attempts: SQLite write transactions queue on
    the writer lock; on PostgreSQL the two subjects' transaction advisory locks are taken
    first, in sorted order."""
    subjects = sorted((("address", _sha(address)), ("username", _sha(username.strip().casefold()))))
    if session.get_bind().dialect.name == "postgresql":
        for kind, subject in subjects:
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"signin:{kind}:{subject}"},
            )
    if throttled(session, username=username, address=address, now=now):
        return None
    record_failure(session, username=username, address=address, now=now)
    session.flush()
    written = [obj for obj in session.identity_map.values() if isinstance(obj, SignInFailure)]
    return [int(obj.id) for obj in written if obj.id is not None and obj.at == now]


def forgive_attempt(session: Session, *, ids: list[int]) -> None:
    """Remove the failure rows :func:`reserve_attempt` wrote for an attempt whose password
    was right."""
    if ids:
        session.execute(delete(SignInFailure).where(col(SignInFailure.id).in_(ids)))


def start_session(
    session: Session, *, operator_id: int, username: str, address: str, now: datetime
) -> str:
    """Create a session for the operator (its failures for ``username`` are cleared);
    returns the new random token."""
    session.execute(
        delete(SignInFailure).where(
            col(SignInFailure.kind) == "username",
            col(SignInFailure.subject) == _sha(username.strip().casefold()),
        )
    )
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
