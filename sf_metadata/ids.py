"""Salesforce record ids: 15/18-character conversion, validation and comparison.

A 15-character id is base-62 and case-sensitive; the 18-character form appends a 3-character
suffix that encodes the case of the 15 characters, so 18-character ids stay unique under
case-insensitive comparison. Sources: reference ``outbound-wire-format.md`` section 4;
https://salesforce.stackexchange.com/tags/salesforce-id/info

Rules kept here:

- Canonical form is 18 characters with the suffix RECOMPUTED from the first 15 characters:
  sanitised fixtures and hand-edited messages carry wrong suffixes, so a wrong suffix is
  corrected, never rejected.
- An id a person typed (:func:`typed_id`: the dashboard's fields and addresses, the CLI's
  ``--user``) is read as Salesforce reads 18-character ids, case-insensitively (the suffix
  is there to restore the case): when its 15 characters are all of one case (lower- or
  upper-cased by a tool or a person) and its suffix, in capitals, fits them (every bit it
  sets is on a letter), they take the case the suffix says (``005be0000000001iaa`` and
  ``005BE0000000001IAA`` are ``005Be0000000001IAA``). Ids Salesforce sends keep the rule
  above.
- 15-character ids are compared case-sensitively (``to_15`` / ``same_org_id``); never
  case-insensitively.
"""

from __future__ import annotations

import hmac
import re
import string
from functools import lru_cache

from sf_metadata.errors import InvalidSalesforceId

__all__ = [
    "try_canonical_id",
    "CALL_CENTER",
    "KEY_PREFIXES",
    "ORGANIZATION",
    "OUTBOUND_MESSAGE_ACTION",
    "OUTBOUND_NOTIFICATION",
    "PROFILE",
    "USER",
    "USER_ROLE",
    "canonical_id",
    "checksum_suffix",
    "is_salesforce_id",
    "same_org_id",
    "to_15",
    "to_18",
    "typed_id",
]

#: Key prefixes (first three characters) by object. Source: reference
#: ``outbound-wire-format.md`` section 4 and the Object Reference "Standard Field Record ID
#: Prefix Decoder" (https://help.salesforce.com/s/articleView?id=000385203).
ORGANIZATION = "00D"
USER = "005"
PROFILE = "00e"
USER_ROLE = "00E"
CALL_CENTER = "04v"
OUTBOUND_MESSAGE_ACTION = "04k"
OUTBOUND_NOTIFICATION = "04l"

KEY_PREFIXES: dict[str, str] = {
    ORGANIZATION: "Organization",
    USER: "User",
    PROFILE: "Profile",
    USER_ROLE: "UserRole",
    CALL_CENTER: "CallCenter",
    OUTBOUND_MESSAGE_ACTION: "WorkflowOutboundMessage",
    OUTBOUND_NOTIFICATION: "outbound notification",
}

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_CASE_BITS = str.maketrans(
    {
        **dict.fromkeys(string.ascii_uppercase, "1"),
        **dict.fromkeys(string.ascii_lowercase + string.digits, "0"),
    }
)
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


def _is_id_text(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def _recased(value: str) -> str | None:
    """The first 15 characters of an 18-character id of one letter case, in the case its
    suffix says (see the module docstring), or ``None``: not 18 characters, letters of
    both cases, or a suffix that does not fit (a bit set on a digit)."""
    if len(value) != 18:
        return None
    head = value[:15]
    if head != head.lower() and head != head.upper():
        return None
    suffix = value[15:].upper()
    out = []
    for chunk, mark in enumerate(suffix):
        bits = _SUFFIX_ALPHABET.find(mark)
        if bits < 0:
            return None
        for i, ch in enumerate(head[chunk * 5 : chunk * 5 + 5]):
            if bits >> i & 1:
                if not ch.isalpha():
                    return None
                out.append(ch.upper())
            else:
                out.append(ch.lower())
    return "".join(out)


def checksum_suffix(id15: str) -> str:
    """The 3-character case-safe suffix of a 15-character id.

    Split the 15 characters into 3 chunks of 5; in each chunk set bit ``i`` (0..4, left to
    right) when character ``i`` is ``A``-``Z``; map 0..31 to ``A``-``Z0``-``5``
    (``outbound-wire-format.md`` section 4; e.g. ``70130000001tcyI`` -> ``AAQ``).

    Raises :class:`InvalidSalesforceId` if ``id15`` is not 15 ASCII letters/digits.
    """
    if not (_is_id_text(id15) and len(id15) == 15):
        raise InvalidSalesforceId(
            f"{id15!r} is not a 15-character Salesforce id (15 ASCII letters and digits)"
        )
    bits = id15.translate(_CASE_BITS)  # "1" for A-Z, "0" for the rest
    return (
        _SUFFIX_ALPHABET[int(bits[4::-1], 2)]
        + _SUFFIX_ALPHABET[int(bits[9:4:-1], 2)]
        + _SUFFIX_ALPHABET[int(bits[14:9:-1], 2)]
    )


def is_salesforce_id(value: object, prefix: str | None = None) -> bool:
    """True if ``value`` is a str of 15 or 18 ASCII letters/digits, starting with ``prefix``
    (a key prefix such as ``"005"``, compared case-sensitively) when one is given.

    The suffix of an 18-character id is not checked (it is recomputed by :func:`to_18`).
    """
    if not _is_id_text(value):
        return False
    assert isinstance(value, str)
    return prefix is None or value.startswith(prefix)


def canonical_id(value: object, prefix: str | None = None) -> str:
    """The canonical 18-character id for ``value`` (15 or 18 characters in; the suffix is
    recomputed from the first 15 characters).

    Raises :class:`InvalidSalesforceId` naming the problem when ``value`` is not an id or
    does not start with ``prefix``.
    """
    try:
        return _CANONICAL[value, prefix]  # type: ignore[index]
    except (KeyError, TypeError):  # not seen yet, or not hashable (so not an id)
        pass
    if not _is_id_text(value):
        shown = (
            repr(value)
            if not isinstance(value, str) or len(value) <= 40
            else repr(value[:40] + "...")
        )
        raise InvalidSalesforceId(
            f"{shown} is not a Salesforce id: expected 15 or 18 ASCII letters and digits"
        )
    assert isinstance(value, str)
    if prefix is not None and not value.startswith(prefix):
        kind = KEY_PREFIXES.get(prefix, prefix)
        article = "an" if kind[:1].lower() in "aeio" else "a"
        raise InvalidSalesforceId(
            f"{value!r} is not {article} {kind} id: expected the key prefix {prefix!r}"
        )
    canonical = _with_suffix(value[:15])
    if len(_CANONICAL) >= _CANONICAL_MAX:
        _CANONICAL.clear()
    _CANONICAL[value, prefix] = canonical
    return canonical


#: Valid ids already canonicalised, by (value, prefix): one message names each id several
#: times (state load, screening, decision, mapping). Bounded; cleared when full.
_CANONICAL: dict[tuple[str, str | None], str] = {}
_CANONICAL_MAX = 65536


@lru_cache(maxsize=65536)
def _with_suffix(id15: str) -> str:
    """``id15`` plus its checksum suffix; cached, as one message names each id several
    times (state load, decision, mapping)."""
    return id15 + checksum_suffix(id15)


def typed_id(value: object, prefix: str | None = None) -> str:
    """:func:`canonical_id` of an id a person typed or pasted (surrounding white space
    removed; an 18-character id of one letter case read case-insensitively, see the module
    docstring). Raises :class:`InvalidSalesforceId` as :func:`canonical_id` does."""
    if isinstance(value, str):
        value = value.strip()
        value = (_recased(value) or value[:15]) + value[15:] if len(value) == 18 else value
    return canonical_id(value, prefix)


def try_canonical_id(value: str | None, prefix: str | None = None) -> str | None:
    """:func:`canonical_id` of ``value`` with surrounding white space removed, or ``None``
    when ``value`` is ``None`` or not a Salesforce id (of ``prefix``, if given)."""
    if value is None:
        return None
    try:
        return canonical_id(value.strip(), prefix)
    except InvalidSalesforceId:
        return None


def to_18(value: str) -> str:
    """18-character form of a 15- or 18-character id, suffix recomputed (canonicalised).

    Raises :class:`InvalidSalesforceId` when ``value`` is not an id.
    """
    return canonical_id(value)


def to_15(value: str) -> str:
    """15-character (case-sensitive) form: the first 15 characters of a 15/18-character id.

    Raises :class:`InvalidSalesforceId` when ``value`` is not an id.
    """
    if not _is_id_text(value):
        raise InvalidSalesforceId(
            f"{value!r} is not a Salesforce id: expected 15 or 18 ASCII letters and digits"
        )
    return value[:15]


def same_org_id(a: str, b: str) -> bool:
    """True if two org ids name the same organization: the first 15 characters compared
    case-sensitively in constant time (``hmac.compare_digest``), as Salesforce's docs ask
    ("validate that messages contain your organization Id", ``outbound-wire-format.md``
    section 3 item 5). False (never an error) when either is not a Salesforce id.
    """
    if not (_is_id_text(a) and _is_id_text(b)):
        return False
    return hmac.compare_digest(a[:15].encode("ascii"), b[:15].encode("ascii"))
