"""The Users page's search box and page links as text, with no store: the query as used
(:func:`clean_query`), its SQLite spellings (:func:`name_spellings`), ``LIKE`` and FTS5
patterns that match it literally, and the opaque keyset cursor of a page link.
:mod:`receiver.dashboard.directory` runs the queries.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import unicodedata

__all__ = [
    "MAX_QUERY",
    "TRIGRAM",
    "clean_query",
    "decode_cursor",
    "encode_cursor",
    "escape_like",
    "fts_query",
    "name_spellings",
]

#: Longer search strings are cut (the page says so).
MAX_QUERY = 200


def encode_cursor(name_key: str, crm_id: str) -> str:
    """An opaque URL-safe cursor for a row."""
    raw = json.dumps([name_key, crm_id], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(value: str | None) -> tuple[str, str] | None:
    """The (name key, crmId) of a cursor, or ``None`` for a missing or malformed one (a
    NUL character or a lone surrogate in either is malformed: no key holds one, and the
    stores refuse them: attack finding, a 500)."""
    if not value or len(value) > 2000:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        isinstance(data, list)
        and len(data) == 2
        and all(isinstance(x, str) and "\x00" not in x and _encodable(x) for x in data)
        and len(data[1]) <= 18
    ):
        return data[0], data[1]
    return None


def _encodable(text: str) -> bool:
    """Is ``text`` valid Unicode text (no lone surrogate, which JSON's ``\\ud800`` can
    carry)?"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escape_like(text: str) -> str:
    """``text`` as a ``LIKE`` pattern that matches itself (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: At most this many spellings of a query's non-ASCII letters are tried (2 ** 4).
_MAX_SPELLINGS = 16


def name_spellings(query: str) -> list[str]:
    """The spellings of ``query`` to look for in a name key (``lower(name)``), case folded.

    SQLite's ``lower()`` and ``LIKE`` fold ASCII letters only, so the key of ``ØRSTED`` is
    ``Ørsted`` and ``LIKE '%ør%'`` misses it: each non-ASCII letter is tried in its lower
    and upper case where that case folds as the letter does (ASCII letters once, lowered;
    the dotless ``ı`` is not tried as ``I``, which LIKE would take for every ``i``). A query with more spellings than
    :data:`_MAX_SPELLINGS` is looked for lowered only (such a query is long, and from 3
    characters SQLite reads the FTS5 index, which folds every letter).
    Example: ``"Ør"`` -> ``["Ør", "ør"]``.
    """
    choices = [
        sorted({v for v in (c.lower(), c.upper()) if v.casefold() == c.casefold()})
        if not c.isascii()
        else [c.lower()]
        for c in query
    ]
    if math.prod(len(c) for c in choices) > _MAX_SPELLINGS:
        return [query.lower()]
    return ["".join(p) for p in itertools.product(*choices)]


def clean_query(raw: str) -> str:
    """The search string as used: NUL characters removed (no name or username can hold
    one: XML 1.0 and PostgreSQL text forbid them, and FTS5 reads one as the end of its
    query), in Unicode normal form C (``e`` + combining acute finds ``é`` as Salesforce
    sends it, composed), surrounding blanks stripped, cut to :data:`MAX_QUERY` characters."""
    return unicodedata.normalize("NFC", raw.replace("\x00", "")).strip()[:MAX_QUERY]


#: The shortest query a trigram index answers.
TRIGRAM = 3


def fts_query(query: str) -> str:
    """The FTS5 query for a substring of the name or of the (casefolded) username: one
    quoted phrase per column, ``"`` doubled (FTS5 string syntax,
    https://sqlite.org/fts5.html section 3.1), so nothing in ``query`` is an operator."""

    def phrase(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    return f"name : {phrase(query)} OR username : {phrase(query.casefold())}"
