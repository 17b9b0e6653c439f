"""A query result page as the User reader decodes it (``deployer.pages``): each record's
text as read, other values of ``records`` left out, a body of another shape or with text
that is not JSON refused as the reader words it, and the look-ahead's errors raised in
place."""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
import pytest

from deployer.pages import decode_page, read_ahead
from sf_metadata.errors import SalesforceUnreadable


def test_records_are_the_text_read_and_values_that_are_not_objects_are_left_out() -> None:
    body = b'{"totalSize": 3, "done": false, "nextRecordsUrl": "/q/01g-2", "records": [{"Id" : "a", "X": [1, 2]}, 7, {"Id":"b"}]}'
    page, next_url = decode_page(body, 1)
    assert next_url == "/q/01g-2" and page.total_size == 3 and not page.done
    assert page.records[0] == b'{"Id" : "a", "X": [1, 2]}'  # its own spacing
    assert [page.parse(r) for r in page.records] == [{"Id": "a", "X": [1, 2]}, 7, {"Id": "b"}]


def test_a_body_of_another_shape_is_read_in_full_or_refused_as_before() -> None:
    odd = json.dumps({"totalSize": "2", "done": True, "records": [{"Id": "a"}, "x"]}).encode()
    page, _ = decode_page(odd, 1)  # totalSize is text: parsed in full
    assert [orjson.loads(r) for r in page.records] == [{"Id": "a"}]
    assert page.total_size == 2
    with pytest.raises(SalesforceUnreadable, match="not a query result"):
        decode_page(b'{"records": []}', 2)
    with pytest.raises(SalesforceUnreadable, match="no nextRecordsUrl"):
        decode_page(b'{"done": false, "records": []}', 2)
    with pytest.raises(SalesforceUnreadable, match="not JSON"):
        decode_page(b'{"done": true, "records": [{"Id": tru}]}', 3)


def test_text_skipped_over_that_is_not_json_is_refused_when_parsed() -> None:
    page, _ = decode_page(b'{"done": true, "records": [{"Id": "\xff"}, {"N": 1e999}]}', 4)
    for raw in page.records:
        with pytest.raises(SalesforceUnreadable, match="page 4 .* not JSON"):
            page.parse(raw)


def test_read_ahead_gives_every_item_in_order_and_raises_a_failure_in_its_place() -> None:
    assert list(read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing() -> Iterator[int]:
        yield 1
        raise SalesforceUnreadable("page 2 failed")

    got: list[int] = []
    with pytest.raises(SalesforceUnreadable, match="page 2 failed"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]
