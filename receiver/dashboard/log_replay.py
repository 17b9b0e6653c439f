"""The Provisioning log's replay buttons: ``Replay`` on a failed row and ``Replay N
failed`` for the view's failures, both through :mod:`receiver.replay_batch` (the same
decision code and apply path as the webhook, as a ``replay`` job: one at a time per
organization).

- ``POST .../provisioning-log/replay`` (form field ``event_id``): one failure again, with
  :func:`~receiver.replay_batch.replay_one`; shown only on failed rows whose notification
  was kept for replay. The result is a flash after the redirect (Post/Redirect/Get).
- With the Action filter on ``failed`` the page counts the view's pending failures
  (:func:`pending_counts`: not replayed yet, not overtaken by a later change of the user;
  those that failed on delivery apart from those that failed again on an earlier replay)
  and offers ``Replay N failed`` (``POST .../provisioning-log/replay-failed``, the
  filter's ``user``, ``from``, ``to`` and ``outcome`` as form fields, ``again=1`` to take
  the earlier replays' failures too): :func:`~receiver.replay_batch.replay_failed`, as
  ``agent-provision replay`` calls it, oldest first, at most 500 a press, refused while
  the feature is off. The redirect carries the counts (``replayed``, ``applied``,
  ``again``, ``left``: integers, checked against each other) for the line reporting them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from receiver.dashboard.framework import (
    FLASH_MESSAGES,
    FLASH_PROBLEMS,
    OrgPage,
    org_route,
    redirect,
)
from receiver.dashboard.logview import LogFilter, parse_filter, row_id
from receiver.replay_batch import ReplayScope, pending_failures, replay_failed, replay_one
from sf_metadata.decision import Action
from sf_metadata.errors import JobBusy, ReplayNotFound, ReplayRefused

__all__ = [
    "FILTER_FIELDS",
    "ROUTES",
    "VIEW_FIELDS",
    "PendingCounts",
    "batch_counts",
    "pending_counts",
    "replay_scope",
]

FLASH_MESSAGES.update(
    {
        "replayed": "Replayed: the notification was decided again; its new entry is the "
        "newest of the log.",
        "replay-failed-again": "Replayed, and it failed again: see the reason in its new "
        "entry, the newest of the log.",
        "replay-unknown": "That notification cannot be replayed: it did not fail, belongs to "
        "no organization of yours, or was logged before replay was kept.",
        "replay-busy": "Another replay of this organization's failures is running (started "
        "from another page, browser or the command line): nothing was replayed twice. Look "
        "at the log again in a moment.",
        "replay-off": "Nothing was replayed: Agent Auto Provision is off for this "
        "organization, so each failure would only be logged as ignored. Turn it on first.",
        "replay-ignored": "Replayed while Agent Auto Provision is off: the notification was "
        "only logged as ignored (its new entry is the newest of the log). Turn the feature "
        "on, then replay it again.",
    }
)
FLASH_PROBLEMS.update(
    {"replay-failed-again", "replay-unknown", "replay-busy", "replay-off", "replay-ignored"}
)

#: Actions that count as applied in the report line.
_APPLIED = frozenset({"created", "updated", "restored", "deprovisioned"})
_BATCH_COUNTS = ("replayed", "applied", "again", "left")
#: The log filters a bulk replay keeps (the form's hidden fields; the action is ``failed``).
FILTER_FIELDS = ("user", "from", "to", "outcome", "source")
#: The filters a row's Replay carries, to come back to the same view.
VIEW_FIELDS = ("action", *FILTER_FIELDS)


def replay_scope(flt: LogFilter, *, again: bool = False) -> ReplayScope:
    """The failures a bulk replay of the view ``flt`` takes (its action filter aside)."""
    return ReplayScope(
        crm_id=flt.crm_id,
        since=flt.since,
        until=flt.until,
        outcome=flt.outcome,
        source=flt.source,
        again=again,
    )


@dataclass(frozen=True, slots=True)
class PendingCounts:
    """How many pending failures the view holds: ``first`` failed on delivery (or a
    reconcile), ``again`` failed again on an earlier replay."""

    first: int
    again: int


def pending_counts(
    session: Session, *, organization_id: str, flt: LogFilter
) -> PendingCounts | None:
    """The view's :class:`PendingCounts`, or ``None`` unless it shows only failures."""
    if flt.action != "failed":
        return None
    found = pending_failures(session, organization_id=organization_id, scope=replay_scope(flt))
    return PendingCounts(len(found.first), len(found.again))


def batch_counts(params: Any) -> dict[str, int] | None:
    """The counts a bulk replay's redirect carries, or ``None`` when absent or not
    consistent (each an ASCII integer; applied plus failed again at most replayed)."""
    if params.get("replayed") is None:
        return None
    counts = {k: row_id(str(params.get(k) or "0")) for k in _BATCH_COUNTS}
    if any(v is None for v in counts.values()):
        return None
    values = {k: int(v or 0) for k, v in counts.items()}
    if values["applied"] + values["again"] > values["replayed"]:
        return None
    return values


async def replay(page: OrgPage) -> Response:
    """POST: replay the failed notification of form field ``event_id``, then show the log
    in the view the form came from (its :data:`VIEW_FIELDS`)."""
    form = page.form
    raw = str(form.get("event_id", "")) if form is not None else ""
    view = parse_filter({k: str(form.get(k, "")) if form is not None else "" for k in VIEW_FIELDS})
    back = view.readable()
    event_id = row_id(raw)
    if event_id is None:
        return redirect(
            page.url("/provisioning-log", **back, flash="replay-unknown"), vouch=page.request
        )
    org_id = page.organization.id
    context = page.context
    now = context.clock()

    def work() -> str:
        try:
            result = replay_one(
                context.engine,
                organization=org_id,
                event_id=event_id,
                now=now,
                hooks=context.hooks,
                actor=page.actor,
            )
        except ReplayNotFound:
            return "replay-unknown"
        except JobBusy:
            return "replay-busy"
        if result.decision.action is Action.FAILED:
            return "replay-failed-again"
        if result.decision.action is Action.IGNORED and not page.organization.enabled:
            return "replay-ignored"  # attack finding: it read as a success
        return "replayed"

    flash = await run_in_threadpool(work)
    return redirect(page.url("/provisioning-log", **back, flash=flash), vouch=page.request)


async def replay_view(page: OrgPage) -> Response:
    """POST: replay the view's pending failures (see the module docstring)."""
    form = page.form
    fields = {k: str(form.get(k, "")) if form is not None else "" for k in FILTER_FIELDS}
    again = form is not None and str(form.get("again", "")) == "1"
    flt = parse_filter({**fields, "action": "failed"})
    back = flt.query()
    if flt.problems:  # the page's forms carry only what was read: a hand-made form
        return redirect(page.url("/provisioning-log", **flt.readable()))
    org_id = page.organization.id
    context = page.context
    now = context.clock()

    def work() -> dict[str, str] | str:
        try:
            done = replay_failed(
                context.engine,
                organization=org_id,
                scope=replay_scope(flt, again=again),
                now=now,
                hooks=context.hooks,
                actor=page.actor,
            )
        except JobBusy:
            return "replay-busy"
        except ReplayRefused:
            return "replay-off"
        counts = {
            "replayed": done.replayed,
            "applied": sum(n for a, n in done.actions.items() if a in _APPLIED),
            "again": done.actions.get(Action.FAILED.value, 0),
            "left": done.remaining,
        }
        return {k: str(v) for k, v in counts.items()}

    outcome = await run_in_threadpool(work)
    if isinstance(outcome, str):
        return redirect(page.url("/provisioning-log", **back, flash=outcome), vouch=page.request)
    return redirect(page.url("/provisioning-log", **back, **outcome), vouch=page.request)


ROUTES = [
    org_route("/provisioning-log/replay", replay, methods=["POST"]),
    org_route("/provisioning-log/replay-failed", replay_view, methods=["POST"]),
]
