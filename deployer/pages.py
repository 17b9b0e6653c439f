"""A query result page as the User reader decodes it (``deployer.users``), and the
reader's look-ahead.

- :func:`decode_page`: a page's body into a :class:`RawPage`: ``msgspec`` decodes the
  keys and finds the extent of each record without parsing it (about a tenth of the time
  of parsing the page), so a record is parsed only when its reader needs it; a body of
  another shape is parsed in full to name what is wrong (:func:`parse_body`).
- :func:`read_ahead`: the next page fetched in a worker thread while the caller works on
  the one it has.

Errors: :class:`~sf_metadata.errors.SalesforceUnreadable` for a body that is not JSON or
not a query result page, as ``deployer.users`` words them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import orjson

from sf_metadata.errors import SalesforceUnreadable

__all__ = ["RawPage", "decode_page", "parse_body", "read_ahead"]


@dataclass(frozen=True, slots=True)
class RawPage:
    """One page with each value of ``records`` as the exact text Salesforce sent (a copy
    of its bytes: a copy costs a third of a view of msgspec's value). A value that is
    not a JSON object is not a record (``deployer.users.QueryPage`` leaves it out; a reader
    parsing it with :meth:`parse` sees it)."""

    records: list[bytes]
    total_size: int
    done: bool
    number: int = 1

    def parse(self, raw: bytes | memoryview) -> Any:
        """One record of this page parsed: a JSON object, or another JSON value (which
        ``UserReader.pages`` leaves out). Raises :class:`SalesforceUnreadable`, as a
        page that is not JSON does, for text that ``msgspec`` skipped over but is not
        valid JSON (a string that is not UTF-8, a number out of range)."""
        try:
            return orjson.loads(raw)
        except ValueError:
            raise SalesforceUnreadable(
                f"page {self.number} of the User query: Salesforce answered with a body "
                "that is not JSON: nothing was written"
            ) from None


class _PageShape(msgspec.Struct):
    """A query result as :func:`decode_page` decodes it: the records are not
    parsed (``msgspec.Raw``: the text of each, found by skipping over it)."""

    records: list[msgspec.Raw]
    done: bool
    totalSize: int | None = None
    nextRecordsUrl: str | None = None


_PAGE = msgspec.json.Decoder(_PageShape)


def decode_page(content: bytes, number: int) -> tuple[RawPage, str | None]:
    """Page ``number``'s body and its ``nextRecordsUrl`` (module docstring). Raises
    :class:`SalesforceUnreadable`."""
    try:
        shape = _PAGE.decode(content)
    except msgspec.DecodeError:  # ValidationError included: another shape
        return _checked_page(parse_body(content, f"page {number} of the User query"), number)
    records = list(map(bytes, shape.records))
    next_url = shape.nextRecordsUrl
    if not shape.done and not (next_url is not None and next_url.startswith("/")):
        _no_next(number)
    return RawPage(records, shape.totalSize or 0, shape.done, number), next_url


def _checked_page(body: dict[str, Any], number: int) -> tuple[RawPage, str | None]:
    """A parsed body checked as a query result page, each record written back as
    JSON (:func:`decode_page`, for a body that is not of the usual shape)."""
    records = body.get("records")
    if not isinstance(records, list) or not isinstance(body.get("done"), bool):
        raise SalesforceUnreadable(
            f"page {number} of the User query is not a query result "
            "(no records/done): nothing was written"
        )
    done = bool(body["done"])
    next_url = body.get("nextRecordsUrl")
    if not done and not (isinstance(next_url, str) and next_url.startswith("/")):
        _no_next(number)
    raw = [orjson.dumps(r) for r in records if isinstance(r, dict)]
    return RawPage(raw, int(body.get("totalSize") or 0), done, number), next_url


def parse_body(content: bytes, what: str) -> dict[str, Any]:
    """The JSON object of a 200 answer (else :class:`SalesforceUnreadable`)."""
    try:
        # orjson: about a third of the json module's time for a 2,000-record page
        # (bench/reconcile.py); the REST API answers UTF-8 JSON.
        body = orjson.loads(content)
    except ValueError:
        raise SalesforceUnreadable(
            f"{what}: Salesforce answered with a body that is not JSON: nothing was written"
        ) from None
    if not isinstance(body, dict):
        raise SalesforceUnreadable(f"{what}: not a query result: nothing was written")
    return body


_T = TypeVar("_T")
_END = object()


def read_ahead(pages: Iterable[_T]) -> Iterator[_T]:
    """``pages``, each next one fetched in a worker thread while the caller works on the
    one it was given (the network wait of a page overlaps the work on the one before;
    the iterator is only ever advanced by that one thread, one step at a time). A
    page's error is raised where that page would have been given, so what failed to
    read is still never an absence. Left early, the step under way finishes in the
    background and is dropped."""
    source = iter(pages)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    try:
        pending = pool.submit(next, source, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, source, _END)
            yield item  # type: ignore[misc]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _no_next(number: int) -> None:
    raise SalesforceUnreadable(
        f"page {number} of the User query says it is not the last one but gives no "
        "nextRecordsUrl: nothing was written"
    )
