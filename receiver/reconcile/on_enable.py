"""The first reconcile when the feature is turned on (CONTRACT section 6): registered with
``receiver.feature_switch`` (listed in its ``ON_ENABLE_MODULES``), so the dashboard's
switch and ``org enable`` share it. Only with a stored Salesforce connection (an
organization without one gets no reconcile, and no message). ``org enable`` runs it before
returning and prints its one-line result (a held plan is reported, not applied); the
dashboard starts it as a background job and links to the Reconcile page."""

from __future__ import annotations

from receiver.db import transaction
from receiver.feature_switch import FeatureFlip, register_on_enable
from receiver.reconcile.jobs import run_in_foreground, start_in_background, stored_reader_factory
from sf_metadata.errors import JobBusy
from sf_metadata.reconcile import COUNT_KEYS

__all__ = ["first_reconcile"]


def first_reconcile(flip: FeatureFlip) -> str | None:
    """Run (or start, ``flip.background``) a full reconcile; one line for the operator."""
    from receiver.salesforce_connection import connection_info

    with transaction(flip.engine, read_only=True) as session:
        if connection_info(session, flip.organization) is None:
            return None
    factory = stored_reader_factory(flip.engine, flip.settings)
    if flip.background:
        try:
            start_in_background(flip.engine, flip.organization, factory, actor=flip.actor)
        except JobBusy:
            return "A reconcile of this organization is already running: see the Reconcile page."
        return "The first reconcile started: its plan appears on the Reconcile page."
    result = run_in_foreground(flip.engine, flip.organization, factory, actor=flip.actor)
    counts = ", ".join(f"{k} {result.counts.get(k, 0)}" for k in COUNT_KEYS)
    line = f"first reconcile: plan {result.plan_id} {result.status}: {counts}"
    if result.status == "held":
        line += (
            f"; held by the deletion guard ({result.hold_reason}), nothing written: "
            f"`agent-provision reconcile show {flip.organization} {result.plan_id}`, then "
            "apply it with --approve-deletions or reject it"
        )
    return line


register_on_enable("first-reconcile", first_reconcile)
