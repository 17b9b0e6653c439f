"""Operators: the people who sign in to the dashboard (CONTRACT section 5).

Every function takes the caller's :class:`sqlmodel.Session` (keyword-only ``session``) and
does not commit: run it inside ``receiver.db.transaction``.

- A username is 1 to 320 printable characters without spaces; it is compared casefolded.
- A password has at least 12 characters; it is stored as an argon2id hash (argon2-cffi's
  RFC 9106 low-memory profile: 64 MiB, 3 passes; ``PasswordHasher`` defaults), never in
  plain text, and never printed.
- An operator manages every organization (``all_organizations``) or only those named when
  it was added (each must be registered).
- Changing the password or removing the operator ends its signed-in sessions.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from receiver.dashboard.tables import Operator, OperatorOrganization, OperatorSession
from receiver.organizations import get_organization
from sf_metadata.errors import OperatorExists, OperatorNotFound, UsageError

__all__ = [
    "credential_stamp",
    "MIN_PASSWORD_LENGTH",
    "OperatorExists",
    "OperatorInfo",
    "OperatorNotFound",
    "add_operator",
    "can_access",
    "end_operator_sessions",
    "get_operator",
    "list_operators",
    "operator_info",
    "remove_operator",
    "set_password",
    "use_hasher",
    "validate_password",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 12
_MAX_PASSWORD_LENGTH = 1024
#: The password hasher (argon2-cffi defaults). Tests swap in a cheaper one with
#: :func:`use_hasher`; the parameters of each hash are in its PHC string, so old hashes
#: still verify.
#: The hasher and its dummy hash, published together as one tuple (a reader never sees a
#: hasher without its dummy hash); built once under :data:`_lock`.
_state: dict[str, tuple[PasswordHasher, str]] = {}
_lock = threading.Lock()


def use_hasher(hasher: PasswordHasher) -> None:
    """Hash new passwords with ``hasher`` from now on."""
    dummy = hasher.hash("not a password of anyone: timing equaliser")
    with _lock:
        _state["current"] = (hasher, dummy)


def _current() -> tuple[PasswordHasher, str]:
    current = _state.get("current")
    if current is None:
        with _lock:
            current = _state.get("current")
            if current is None:
                hasher = PasswordHasher()
                current = (hasher, hasher.hash("not a password of anyone: timing equaliser"))
                _state["current"] = current
    return current


def _hasher() -> PasswordHasher:
    return _current()[0]


def _dummy_hash() -> str:
    return _current()[1]


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    """What may be shown of an operator: no hash. ``organizations`` is ``None`` for an
    operator of every organization, else the sorted names."""

    id: int
    username: str
    organizations: tuple[str, ...] | None
    created_at: datetime
    password_changed_at: datetime

    def to_json(self) -> dict[str, object]:
        """``{"username", "organizations": "all" | [names], "createdAt",
        "passwordChangedAt"}`` (ISO 8601 UTC)."""
        return {
            "username": self.username,
            "organizations": "all" if self.organizations is None else list(self.organizations),
            "createdAt": _iso(self.created_at),
            "passwordChangedAt": _iso(self.password_changed_at),
        }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _key(username: str) -> str:
    return username.strip().casefold()


def validate_username(username: str) -> str:
    """``username`` stripped, if 1-320 printable characters without whitespace. Raises
    :class:`~sf_metadata.errors.UsageError`."""
    name = username.strip() if isinstance(username, str) else ""
    if not name or len(name) > 320 or any(ch.isspace() or not ch.isprintable() for ch in name):
        raise UsageError(
            f"operator username {username!r} is invalid: use 1 to 320 printable characters "
            "without spaces"
        )
    return name


def validate_password(password: str) -> str:
    """``password`` unchanged if it has 12 to 1024 characters. Raises
    :class:`~sf_metadata.errors.UsageError` (the message never holds the password)."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > _MAX_PASSWORD_LENGTH:
        raise UsageError(f"the password is too long: use at most {_MAX_PASSWORD_LENGTH} characters")
    return password


def get_operator(session: Session, username: str) -> Operator:
    """The operator ``username`` (casefolded). Raises :class:`OperatorNotFound`."""
    row = session.exec(select(Operator).where(Operator.username_key == _key(username))).first()
    if row is None:
        raise OperatorNotFound(f"operator {username!r} does not exist")
    return row


def _organizations(session: Session, operator: Operator) -> tuple[str, ...] | None:
    if operator.all_organizations:
        return None
    rows = session.exec(
        select(OperatorOrganization.organization_id).where(
            OperatorOrganization.operator_id == operator.id
        )
    ).all()
    return tuple(sorted(rows))


def operator_info(session: Session, operator: Operator) -> OperatorInfo:
    """The :class:`OperatorInfo` of ``operator``."""
    assert operator.id is not None
    return OperatorInfo(
        id=operator.id,
        username=operator.username,
        organizations=_organizations(session, operator),
        created_at=operator.created_at,
        password_changed_at=operator.password_changed_at,
    )


def add_operator(
    session: Session,
    *,
    username: str,
    password: str,
    organizations: tuple[str, ...] = (),
    now: datetime | None = None,
) -> OperatorInfo:
    """Add an operator: of every organization when ``organizations`` is empty, else of
    those named. Raises :class:`~sf_metadata.errors.UsageError` (username, password),
    :class:`OperatorExists`, :class:`~sf_metadata.errors.OrganizationNotFound`."""
    name = validate_username(username)
    validate_password(password)
    if session.exec(select(Operator.id).where(Operator.username_key == _key(name))).first():
        raise OperatorExists(f"operator {name!r} already exists")
    names = sorted(set(organizations))
    for org in names:
        get_organization(session, org)
    stamp = _now(now)
    row = Operator(
        username=name,
        username_key=_key(name),
        password_hash=_hasher().hash(password),
        all_organizations=not names,
        created_at=stamp,
        password_changed_at=stamp,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    for org in names:
        session.add(OperatorOrganization(operator_id=row.id, organization_id=org))
    session.flush()
    return operator_info(session, row)


def list_operators(session: Session) -> list[OperatorInfo]:
    """Every operator, by username key."""
    rows = session.exec(select(Operator).order_by(col(Operator.username_key))).all()
    return [operator_info(session, r) for r in rows]


def end_operator_sessions(
    session: Session, *, operator_id: int, reason: str, now: datetime | None = None
) -> int:
    """End every open signed-in session of the operator; returns how many."""
    result = session.execute(
        update(OperatorSession)
        .where(
            col(OperatorSession.operator_id) == operator_id,
            col(OperatorSession.ended_at).is_(None),
        )
        .values(ended_at=_now(now), end_reason=reason[:40])
    )
    return int(getattr(result, "rowcount", 0) or 0)


def remove_operator(session: Session, *, username: str) -> None:
    """Remove the operator and its sessions (they stop working at once). Raises
    :class:`OperatorNotFound`."""
    row = get_operator(session, username)
    session.execute(delete(OperatorSession).where(col(OperatorSession.operator_id) == row.id))
    session.execute(
        delete(OperatorOrganization).where(col(OperatorOrganization.operator_id) == row.id)
    )
    session.delete(row)
    session.flush()


def set_password(
    session: Session, *, username: str, password: str, now: datetime | None = None
) -> int:
    """Replace the operator's password and end its signed-in sessions; returns how many
    sessions ended. Raises :class:`OperatorNotFound`, :class:`~sf_metadata.errors.UsageError`."""
    validate_password(password)
    row = get_operator(session, username)
    stamp = _now(now)
    row.password_hash = _hasher().hash(password)
    row.password_changed_at = stamp
    session.add(row)
    session.flush()
    assert row.id is not None
    return end_operator_sessions(session, operator_id=row.id, reason="password changed", now=stamp)


def _typed_operator(session: Session, username: object) -> Operator | None:
    """The operator a typed username names; ``None``, without a query, for text no
    operator can have (what :func:`validate_username` refuses: a NUL, which PostgreSQL
    refuses in a parameter, a control character, a space, more than 320 characters)."""
    if not isinstance(username, str):
        return None
    try:
        validate_username(username)
    except UsageError:
        return None
    return session.exec(select(Operator).where(Operator.username_key == _key(username))).first()


def credential_stamp(session: Session, *, username: str) -> str | None:
    """A short digest of the operator's credential (id and when its password was set),
    ``None`` for an unknown username: it changes with ``operator set-password`` and when
    the operator is removed, so what is bound to it (the sign-in device cookie) ends then."""
    row = _typed_operator(session, username)
    if row is None:
        return None
    seed = f"{row.id}:{row.password_changed_at.isoformat()}"
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def verify_password(session: Session, *, username: str, password: str) -> Operator | None:
    """The operator if ``password`` is theirs, else ``None`` (also for an unknown username,
    after the same work). Never raises for bad input."""
    row = _typed_operator(session, username)
    if not isinstance(password, str) or not 0 < len(password) <= _MAX_PASSWORD_LENGTH:
        return None
    try:
        _hasher().verify(row.password_hash if row is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    return row


def can_access(session: Session, *, operator: Operator, organization_id: str) -> bool:
    """True if the operator manages ``organization_id`` (whether or not it exists: the
    caller answers 404 in both cases)."""
    if operator.all_organizations:
        return True
    return (
        session.exec(
            select(OperatorOrganization.organization_id).where(
                OperatorOrganization.operator_id == operator.id,
                OperatorOrganization.organization_id == organization_id,
            )
        ).first()
        is not None
    )
