"""The digest rows' document (``receiver.reconcile.digest_document``) on SQLite and
PostgreSQL: written with the rows, it is always exactly them; a store without one (rows
from before it) is read from the rows and gets it at its next applied plan."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from receiver.db import transaction
from receiver.reconcile.digest_document import has_document, read_document, select_columns
from receiver.reconcile.digests import load_snapshot
from receiver.reconcile.run import reconcile
from receiver.reconcile.tables import ReconcileDigestSnapshot
from tests.factories import sf_id
from tests.fake_salesforce import FakeSalesforce
from tests.receiver._harness import Receiver
from tests.user_records import make_user_record

STAMP = "2026-11-20T10:00:00.000Z"
NEWER = "2026-11-21T10:00:00.000Z"


def records(*ns: int, **fields: Any) -> list[dict[str, Any]]:
    return [make_user_record(n, SystemModstamp=STAMP, LastModifiedDate=STAMP, **fields) for n in ns]


def document_and_rows(receiver: Receiver) -> tuple[Any, Any]:
    with transaction(receiver.engine, read_only=True) as session:
        return read_document(session, receiver.name), select_columns(session, receiver.name)


def test_the_document_is_the_rows_after_every_applied_plan(receiver: Receiver) -> None:
    fake = FakeSalesforce(
        receiver.salesforce_org_id,
        [*records(1, 2), *records(3, IsActive=False), *records(4, CallCenterId=None)],
    )
    reconcile(receiver.engine, receiver.name, fake.reader())
    document, rows = document_and_rows(receiver)
    assert document == rows and len(rows.crm_ids) == 4
    by_crm = dict(
        zip(rows.crm_ids, zip(rows.agents, rows.usernames, rows.disabled, strict=True), strict=True)
    )
    assert by_crm[sf_id("005", 3)] == (False, None, False)  # a tombstone alone
    assert by_crm[sf_id("005", 4)][0] is True and by_crm[sf_id("005", 4)][2] is True
    # A changed user and a new one: the rows change, and the document with them.
    fake.records = [
        *records(1),
        make_user_record(2, SystemModstamp=NEWER, LastModifiedDate=NEWER, Name="Renamed"),
        *records(3, IsActive=False),
        *records(4, CallCenterId=None),
        *records(5),
    ]
    reconcile(receiver.engine, receiver.name, fake.reader())
    document, rows = document_and_rows(receiver)
    assert document == rows and len(rows.crm_ids) == 5


def test_a_store_without_the_document_reads_the_rows_and_gets_it_when_a_plan_applies(
    receiver: Receiver,
) -> None:
    fake = FakeSalesforce(receiver.salesforce_org_id, records(1, 2, 3))
    reconcile(receiver.engine, receiver.name, fake.reader())
    with transaction(receiver.engine, read_only=True) as session:
        expected = load_snapshot(session, receiver.name)
    with transaction(receiver.engine) as session:
        session.connection().execute(sa.delete(ReconcileDigestSnapshot.__table__))  # type: ignore[attr-defined]
    with transaction(receiver.engine, read_only=True) as session:
        assert not has_document(session, receiver.name)
        assert load_snapshot(session, receiver.name) == expected  # from the rows
    result = reconcile(receiver.engine, receiver.name, fake.reader())
    assert result.counts["unchanged"] == 3  # vouched for from the rows: nothing to record
    document, rows = document_and_rows(receiver)
    assert document == rows and len(rows.crm_ids) == 3
