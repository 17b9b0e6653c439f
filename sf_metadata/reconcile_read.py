"""Reading a reconcile's User records (``sf_metadata.reconcile``'s first step): each
record's JSON text is digested as read (:func:`record_digest`); a record whose digest
the store vouches for is a :class:`KnownUser` (neither parsed nor mapped), any other is
decoded with the receiver's :func:`~sf_metadata.decision.user_change` into a
:class:`QueriedUser`. :func:`decided_users` decodes the known ones that must be decided
in full after all (the store no longer vouches for them, or a user is read twice).
Pure; raises nothing but the ``loads`` errors :func:`read_record` documents.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple, cast

import orjson

from sf_metadata.decision import user_change
from sf_metadata.ids import USER, try_canonical_id
from sf_metadata.mapping import AgentRecord
from sf_metadata.soql import record_fields

__all__ = [
    "Buffer",
    "Known",
    "KnownUser",
    "QueriedUser",
    "ReadUser",
    "Vouching",
    "decided_users",
    "read_page",
    "read_record",
    "read_user",
    "record_digest",
]

#: A record's JSON text: bytes, or a view of the page it was read in.
Buffer = bytes | memoryview


@dataclass(frozen=True, slots=True)
class QueriedUser:
    """One User record as read, decoded once with the receiver's
    :func:`~sf_metadata.decision.user_change`.

    ``crm_id`` is the canonical 18-character id (``None`` when ``Id`` is missing or not a
    User id; ``raw_id`` holds its text, cut to 40 characters). Either ``error`` is ``None``
    and ``agent``/``stamp``/``active`` hold the mapping, the ordering stamp
    (SystemModstamp, else LastModifiedDate) and ``IsActive``; or ``error`` is the reason.
    ``digest``: :func:`record_digest` of the record read (``None`` when unknown).
    """

    crm_id: str | None
    raw_id: str
    agent: AgentRecord | None
    stamp: datetime | None
    active: bool
    error: str | None
    digest: str | None = None


def read_user(record: Mapping[str, Any], *, digest: str | None = None) -> QueriedUser:
    """Decode one SOQL JSON record (see :func:`~sf_metadata.soql.record_fields`). Raises
    nothing: bad content becomes ``error`` (the receiver's reason text)."""
    fields = record_fields(record)
    raw = fields.get("Id") or ""
    if not raw.strip():
        return QueriedUser(None, "", None, None, False, "the User record has no Id")
    change = user_change(raw, fields)
    if change.error is not None or change.agent is None:
        crm = try_canonical_id(raw, USER)
        return QueriedUser(crm, raw[:40], None, None, False, change.error or "unreadable")
    return QueriedUser(
        change.agent.crm_id, raw[:40], change.agent, change.stamp, change.active, None, digest
    )


class Known(NamedTuple):
    """What the store vouches for about one user (``receiver.reconcile.digests``):
    ``digest`` is :func:`record_digest` of the User record its stored state was last
    decided from, and that state is still exactly what the decision wrote: an agent
    (``provisioned``; its ``username`` and whether its JSON says ``disabled``) with no
    tombstone, or a tombstone alone (``username`` ``None``) holding that record's stamp;
    nothing parked for the user. A named tuple: a store builds one per user."""

    digest: str
    provisioned: bool
    username: str | None
    disabled: bool


class KnownUser(NamedTuple):
    """A record read whose digest is one stored when the read began: neither parsed nor
    mapped. ``crm_id`` is the user the digest was stored for (a stored 18-character id:
    its ``Id``, since the text digested holds it), ``digest`` its
    :func:`record_digest`, ``raw`` its JSON text (a view of the page read), to decide
    it in full when :func:`plan_users` must (the state loaded under the lock no longer
    vouches for that digest, or the user is read twice). A named tuple: a read builds one
    per user."""

    crm_id: str
    digest: str
    raw: Buffer


ReadUser = QueriedUser | KnownUser

#: A :class:`KnownUser` from a tuple of its values (no Python call per record).
_new_known_user = partial(tuple.__new__, KnownUser)


def record_digest(raw: Buffer, salt: bytes) -> str:
    """The digest of one SOQL JSON record as read (``raw``: its exact text): the first 32
    hex characters of the SHA-256 of ``salt`` and ``raw``. The ``salt`` names the mapping
    code, so a changed mapping never meets an old digest; the text holds the ``Id``, so
    one digest never names two users."""
    return hashlib.sha256(salt + raw).hexdigest()[:32]


def read_record(
    raw: Buffer,
    known: Mapping[str, str],
    salt: bytes,
    loads: Callable[[Buffer], Any] = orjson.loads,
) -> QueriedUser | KnownUser | None:
    """The record whose text is ``raw``: a :class:`KnownUser` when ``known`` (digest ->
    crm id, the digests stored) holds its digest (then nothing is parsed or mapped),
    else :func:`read_user` of it parsed with ``loads`` (whose errors propagate);
    ``None`` when that is not a JSON object (not a record)."""
    digest = record_digest(raw, salt)
    crm = known.get(digest)
    if crm is not None:
        return KnownUser(crm, digest, raw)
    record = loads(raw)
    return read_user(record, digest=digest) if isinstance(record, dict) else None


def read_page(
    records: Sequence[Buffer],
    known: Mapping[str, str],
    salt: bytes,
    loads: Callable[[Buffer], Any] = orjson.loads,
) -> list[QueriedUser | KnownUser]:
    """:func:`read_record` of every record of a page in order, those that are not JSON
    objects left out; a page whose every digest is known is read in a few passes over
    it, without a Python loop per record."""
    sha = hashlib.sha256  # record_digest, inline: a call less per record
    digests = [sha(salt + raw).hexdigest()[:32] for raw in records]
    crms = list(map(known.get, digests))
    if None not in crms:
        return list(map(_new_known_user, zip(cast(list[str], crms), digests, records, strict=True)))
    out: list[QueriedUser | KnownUser] = []
    for raw, digest, crm in zip(records, digests, crms, strict=True):
        if crm is not None:
            out.append(KnownUser(crm, digest, raw))
        elif isinstance(record := loads(raw), dict):
            out.append(read_user(record, digest=digest))
    return out


_CRM_OF = attrgetter("crm_id")
_DIGEST_OF = attrgetter("digest")
_MISSING = Known("", False, None, False)  # matches no digest


class Vouching(NamedTuple):
    """What :func:`vouch` found: ``users`` is :func:`decided_users`' result; when every
    user read is a :class:`KnownUser` the store vouches for and none is read twice,
    ``known`` holds each one's :class:`Known` in read order, ``ids`` their crm ids in
    read order and ``id_set`` as a set (what :func:`~sf_metadata.reconcile.plan_users`
    builds those rows and ``notFound`` from), else the three are ``None``."""

    users: list[ReadUser]
    known: list[Known] | None = None
    ids: list[str] | None = None
    id_set: set[str] | None = None


def decided_users(users: Sequence[ReadUser], known: Mapping[str, Known]) -> list[ReadUser]:
    """``users`` with every :class:`KnownUser` that ``known`` does not vouch for (no
    entry with its digest: its user changed in the store since the read began), or whose
    user is read more than once, decoded into a :class:`QueriedUser` (to decide in full;
    the state must hold those users: ``receiver.reconcile.state`` loads it after this)."""
    return vouch(users, known).users


def vouch(users: Sequence[ReadUser], known: Mapping[str, Known]) -> Vouching:
    """:class:`Vouching` of ``users`` against ``known`` (see :func:`decided_users`), in
    passes over them when every user is vouched for."""
    ids = list(map(_CRM_OF, users))
    repeated: set[str | None] = set()
    distinct = set(ids)
    if len(distinct) != len(ids):
        repeated = {crm for crm, n in Counter(ids).items() if n > 1 and crm is not None}
    vouched = list(map(known.get, ids, repeat(_MISSING)))
    if list(map(_DIGEST_OF, users)) == list(map(_DIGEST_OF, vouched)):
        # Every user read is the digest vouched for (no loop per user).
        if not repeated and set(map(type, users)) == {KnownUser}:
            return Vouching(list(users), vouched, cast(list[str], ids), cast(set[str], distinct))
        stale = []
    else:
        stale = [
            i
            for i, (u, k) in enumerate(zip(users, vouched, strict=True))
            if type(u) is KnownUser and k.digest != u.digest
        ]
    if repeated:
        stale += [i for i, crm in enumerate(ids) if crm in repeated]
    out = list(users)
    for i in dict.fromkeys(stale):
        u = users[i]
        if type(u) is KnownUser:
            out[i] = read_user(orjson.loads(u.raw), digest=u.digest)
    return Vouching(out)
