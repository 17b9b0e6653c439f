"""Private helper of ``receiver.provisioning``: write the decisions' effects so that an
unexpected store error for ONE change cannot turn a whole message into a 500 that
Salesforce retries for 24 hours (issue 12, item 3).

The effects are written set-based, in one savepoint (the fast path: one ``SAVEPOINT`` and
one ``RELEASE`` more per message). If the store refuses that batch with an error that is
not transient (a constraint, a value the column cannot hold, a trigger: SQLAlchemy
``IntegrityError``, ``DataError``, ``ProgrammingError``, ``InternalError``, ...), the
savepoint is rolled back and each decision with an effect is written alone, in document
order, in its own savepoint. Those the store refuses again become ``failed`` decisions
(nothing written, no session ended, the notification id NOT marked processed, so it can be
replayed), with a reason naming the store's error class and first message line (never SQL
parameters); the others are written. The message is then logged and acknowledged as usual.

A transient error (connection lost, lock or busy timeout, read-only or deleted store:
``receiver.db`` maps them to :class:`~sf_metadata.errors.StoreUnavailable`) is never
contained: it propagates, the whole transaction rolls back, and the webhook answers 503.

In the one-by-one fallback a change that depended on another change of the same message
(a username swap inside one message) may fail with it; it is logged as failed, never
half-applied.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import exc
from sqlmodel import Session

from receiver.db import is_transient
from sf_metadata.decision import Action, Decision

__all__ = ["write_contained"]

log = logging.getLogger("agent_provision.receiver.provisioning")

WriteEffects = Callable[[Session, str, Sequence[Decision], datetime], None]


def write_contained(
    session: Session,
    org_id: str,
    decisions: tuple[Decision, ...],
    now: datetime,
    write: WriteEffects,
) -> tuple[Decision, ...]:
    """Write ``decisions`` with ``write`` (``write_effects``) as the module docstring says;
    returns the decisions, with those the store refused replaced by ``failed`` ones.
    Raises transient store errors unchanged."""
    try:
        with session.begin_nested():
            write(session, org_id, decisions, now)
        return decisions
    except exc.SQLAlchemyError as error:
        if is_transient(error):
            raise
        log.warning(
            "organization %s: the store refused a batch of %d change(s) (%s); writing "
            "them one by one",
            org_id,
            len(decisions),
            type(error).__name__,
        )
    out: list[Decision] = []
    for d in decisions:
        if d.effect is None:
            out.append(d)
            continue
        try:
            with session.begin_nested():
                write(session, org_id, (d,), now)
            out.append(d)
        except exc.SQLAlchemyError as error:
            if is_transient(error):
                raise
            out.append(_failed(d, error))
    return tuple(out)


def _failed(d: Decision, error: exc.SQLAlchemyError) -> Decision:
    orig = getattr(error, "orig", None) or error
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]
    log.warning(
        "organization change for user %s not applied: the store refused it (%s: %s)",
        d.crm_id,
        type(orig).__name__,
        first,
    )
    return dataclasses.replace(
        d,
        action=Action.FAILED,
        reason=(
            f"the store refused this change ({type(orig).__name__}: {first}); nothing "
            "was written for it: replay it once the store is fixed"
        ),
        agent=None,
        mark_processed=False,
        effect=None,
        end_sessions=None,
        park=None,
        unpark=(),
    )
