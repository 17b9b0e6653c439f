"""The throttle of wrong passwords at ``/login`` (OWASP Authentication Cheat Sheet,
"Account lockout" and "device cookies"), counted in the store so that it holds across
``serve --workers N`` and hosts.

Each wrong password (or unknown username) writes one ``dashboard_signin_failure`` row per
subject it counts against; a subject is the SHA-256 of what it names, so a password typed
into the username field is never stored:

=========  =====================================  ======================================
kind       subject                                holds sign-in when
=========  =====================================  ======================================
pair       casefolded username + client address   :data:`USERNAME_LIMIT` in :data:`WINDOW`
address    client address                         :data:`ADDRESS_LIMIT` in :data:`WINDOW`
username   casefolded username                    :data:`USERNAME_TOTAL_LIMIT` in
                                                  :data:`TOTAL_WINDOW` (any addresses)
device     this browser's device token            :data:`USERNAME_LIMIT` in :data:`WINDOW`
=========  =====================================  ======================================

An IPv6 address counts by its /64 network (:func:`address_key`). So guessing from one
address is held fast (5 a quarter hour per username, 30 in all), and
guessing from many addresses is held slowly (50 an hour per username). Counting the fast
lock per (username, address) rather than per username means a stranger posting wrong
passwords for an operator's username locks out only their own address, not the operator.

The slow per-username limit alone would bring that denial back (enough addresses can
trip it), so a browser that has signed in as a username before carries a **device
cookie** (``aap_device``: a random token and the username's hash, signed with the
dashboard key, ``HttpOnly``, path ``/login``, :data:`DEVICE_LIFETIME`): its attempts for
that username are held only by its own failures (kind ``device``), never by the pair,
address or username counts that others ran up. The cookie is bound to the operator's
credential (``operators.credential_stamp``): a password change or the operator's removal
ends it.

An attempt is counted *before* its password is checked (:func:`reserve_attempt`, in one
write transaction: SQLite write transactions queue on the writer lock; on PostgreSQL the
subjects' transaction advisory locks are taken first, in sorted order), so concurrent
attempts cannot slip past a limit; a right password then removes its own rows
(:func:`forgive_attempt`) and the (username, address) count. Rows older than
:data:`LONGEST_WINDOW` are pruned off the request path (``receiver.maintenance``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from receiver.dashboard.tables import SignInFailure

__all__ = [
    "ADDRESS_LIMIT",
    "DEVICE_COOKIE",
    "DEVICE_LIFETIME",
    "LONGEST_WINDOW",
    "TOTAL_WINDOW",
    "USERNAME_LIMIT",
    "USERNAME_TOTAL_LIMIT",
    "WINDOW",
    "Attempt",
    "Hold",
    "address_key",
    "device_cookie_value",
    "device_token",
    "forgive_attempt",
    "prune_failures",
    "reserve_attempt",
]

#: Failures for one username from one address (and from one trusted browser) in WINDOW.
USERNAME_LIMIT = 5
#: Failures from one address, whatever the usernames, in WINDOW.
ADDRESS_LIMIT = 30
WINDOW = timedelta(minutes=15)
#: Failures for one username from every address in TOTAL_WINDOW.
USERNAME_TOTAL_LIMIT = 50
TOTAL_WINDOW = timedelta(hours=1)
#: Failure rows older than this count for nothing and are pruned.
LONGEST_WINDOW = max(WINDOW, TOTAL_WINDOW)

DEVICE_COOKIE = "aap_device"
DEVICE_LIFETIME = timedelta(days=90)
_DEVICE_SALT = "aap-device"

_LIMITS: dict[str, tuple[int, timedelta]] = {
    "pair": (USERNAME_LIMIT, WINDOW),
    "address": (ADDRESS_LIMIT, WINDOW),
    "username": (USERNAME_TOTAL_LIMIT, TOTAL_WINDOW),
    "device": (USERNAME_LIMIT, WINDOW),
}


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _username_key(username: str) -> str:
    return username.strip().casefold()


def device_cookie_value(secret: bytes, username: str, credential: str | None) -> str:
    """A new device cookie value for a browser that just signed in as ``username``, bound
    to the operator's ``credential`` stamp (``operators.credential_stamp``)."""
    payload = {
        "u": _sha(_username_key(username))[:32],
        "c": credential or "",
        "n": secrets.token_urlsafe(16),
    }
    return URLSafeTimedSerializer(secret, salt=_DEVICE_SALT).dumps(payload)


def device_token(
    secret: bytes, value: str | None, username: str, credential: str | None
) -> str | None:
    """The device token of cookie ``value`` when it was issued for ``username`` with the
    operator's current ``credential`` stamp (so it ends at a password change or when the
    operator is removed) and is authentic and younger than :data:`DEVICE_LIFETIME`; else
    ``None``."""
    if credential is None:
        return None
    if not value or len(value) > 300:
        return None
    try:
        payload = URLSafeTimedSerializer(secret, salt=_DEVICE_SALT).loads(
            value, max_age=int(DEVICE_LIFETIME.total_seconds())
        )
    except BadSignature:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
        return None
    if payload.get("u") != _sha(_username_key(username))[:32] or payload.get("c") != credential:
        return None
    return str(payload["n"])


@dataclass(frozen=True, slots=True)
class Hold:
    """Why an attempt was held: the ``kind`` of the limit reached (``pair``, ``address``,
    ``username`` or ``device``) and ``until`` when an attempt may be made again (aware
    UTC)."""

    kind: str
    until: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """What :func:`reserve_attempt` did: ``hold`` when the attempt is held (nothing was
    counted), else the ids of the failure rows it wrote (``ids``)."""

    ids: tuple[int, ...] = ()
    hold: Hold | None = None


def address_key(address: str) -> str:
    """The address a limit counts: an IPv6 address by its /64 network (one host usually
    holds a whole /64, so counting single addresses would let it rotate through them), an
    IPv4-mapped IPv6 address as its IPv4 address, anything else as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _subjects(username: str, address: str, device: str | None) -> dict[str, str]:
    key = _username_key(username)
    address = address_key(address)
    subjects = {
        "pair": _sha(f"{key}\x00{address}"),
        "address": _sha(address),
        "username": _sha(key),
    }
    if device is not None:
        subjects["device"] = _sha(device)
    return subjects


def _hold(session: Session, kind: str, subject: str, now: datetime) -> Hold | None:
    """The hold of one subject, or ``None`` while it is under its limit. ``until`` is when
    enough of its failures have left the window for one more attempt."""
    limit, window = _LIMITS[kind]
    since = now - window
    base = (
        col(SignInFailure.kind) == kind,
        col(SignInFailure.subject) == subject,
        col(SignInFailure.at) > since,
    )
    count = int(session.exec(select(func.count()).where(*base)).one())
    if count < limit:
        return None
    oldest_that_must_go = session.exec(
        select(SignInFailure.at)
        .where(*base)
        .order_by(col(SignInFailure.at))
        .offset(count - limit)
        .limit(1)
    ).one()
    return Hold(kind, oldest_that_must_go + window)


def reserve_attempt(
    session: Session, *, username: str, address: str, now: datetime, device: str | None = None
) -> Attempt:
    """Count one sign-in attempt BEFORE its password is checked, in the caller's write
    transaction (see the module docstring). ``device`` is the browser's device token for
    this username (:func:`device_token`), or ``None``. Returns the rows written, or the
    hold (the latest ``until`` of the limits reached) and writes nothing."""
    subjects = _subjects(username, address, device)
    if session.get_bind().dialect.name == "postgresql":
        for kind, subject in sorted(subjects.items()):
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"signin:{kind}:{subject}"},
            )
    checked = ("device",) if device is not None else ("pair", "address", "username")
    holds = [h for k in checked if (h := _hold(session, k, subjects[k], now)) is not None]
    if holds:
        return Attempt(hold=max(holds, key=lambda h: h.until))
    rows = [SignInFailure(kind=kind, subject=subject, at=now) for kind, subject in subjects.items()]
    session.add_all(rows)
    session.flush()
    return Attempt(ids=tuple(int(r.id) for r in rows if r.id is not None))


def forgive_attempt(session: Session, *, attempt: Attempt, username: str, address: str) -> None:
    """A right password: remove the attempt's own rows and the (username, address)
    count (the per-address and per-username counts stay: they are others' failures too)."""
    if attempt.ids:
        session.execute(delete(SignInFailure).where(col(SignInFailure.id).in_(attempt.ids)))
    session.execute(
        delete(SignInFailure).where(
            col(SignInFailure.kind) == "pair",
            col(SignInFailure.subject) == _subjects(username, address, None)["pair"],
        )
    )


def prune_failures(session: Session, *, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` failure rows older than :data:`LONGEST_WINDOW` (they count
    for nothing); returns how many."""
    ids = list(
        session.exec(
            select(SignInFailure.id)
            .where(col(SignInFailure.at) <= now - LONGEST_WINDOW)
            .order_by(col(SignInFailure.id))
            .limit(limit)
        ).all()
    )
    if ids:
        session.execute(delete(SignInFailure).where(col(SignInFailure.id).in_(ids)))
    return len(ids)
