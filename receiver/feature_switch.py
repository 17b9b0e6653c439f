"""The Agent Auto Provision switch: one function behind the dashboard's switch and
``agent-provision org enable|disable`` (CONTRACT sections 3, 5 and 6).

:func:`set_feature` flips ``organization.enabled`` and records one ``feature_audit`` row
per change (who: ``"operator:<username>"`` or ``"cli:<login>@<host>"``; when; the client
address; before and after) in the same transaction. After the commit, when the feature went from off to
on, it runs the on-enable actions registered with :func:`register_on_enable` (installing
the webhook when it was never deployed, the first reconcile), in registration order. An
action's :class:`~sf_metadata.errors.AgentProvisionError` does not undo the flip: it is
reported in :attr:`FlipResult.actions` (the CLI prints it, the dashboard shows it).

Registering an action (in the module that owns it, imported by ``receiver.feature_switch``
consumers through :data:`ON_ENABLE_MODULES`)::

    from receiver.feature_switch import FeatureFlip, register_on_enable

    def first_reconcile(flip: FeatureFlip) -> str | None:
        if flip.background:          # dashboard: start a job and return at once
            ...
        return "first reconcile: applied (3 created)"   # one line for the operator, or None

    register_on_enable("first-reconcile", first_reconcile)

Turning it off stops provisioning: messages are still acknowledged and logged as ignored.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from receiver._logging import LOGGER_NAME
from receiver.db import transaction
from receiver.models import Organization, UTCDateTime, organization_column
from receiver.organizations import get_organization
from receiver.settings import Settings
from sf_metadata.errors import AgentProvisionError

__all__ = [
    "ON_ENABLE_MODULES",
    "ActionOutcome",
    "FeatureAudit",
    "FeatureFlip",
    "FlipResult",
    "OnEnable",
    "list_audit",
    "register_on_enable",
    "registered_actions",
    "set_feature",
]

log = logging.getLogger(LOGGER_NAME)


class FeatureAudit(SQLModel, table=True):
    """One flip of the switch (migration ``0008_dashboard``)."""

    __tablename__ = "feature_audit"
    __table_args__ = (sa.Index("ix_feature_audit_organization_id_id", "organization_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(sa_column=organization_column())
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=340)
    client_address: str | None = Field(default=None, max_length=64)
    enabled_before: bool
    enabled_after: bool


@dataclass(frozen=True, slots=True)
class FeatureFlip:
    """What an on-enable action is told: the ``organization`` name, the ``engine`` and
    ``settings`` of the store, who flipped it (``actor``), when (``at``), and whether the
    caller wants the action in the ``background`` (dashboard: start a job, return at once)
    or done before it returns (CLI)."""

    organization: str
    engine: Engine
    settings: Settings
    actor: str
    at: datetime
    background: bool


#: An on-enable action: returns one line for the operator, or ``None``.
OnEnable = Callable[[FeatureFlip], "str | None"]

_ACTIONS: list[tuple[str, OnEnable]] = []

#: Modules that register on-enable actions when imported (h9's webhook install, h10's
#: first reconcile add theirs here); :func:`set_feature` imports them first.
ON_ENABLE_MODULES: list[str] = ["receiver.webhook_install", "receiver.reconcile.on_enable"]


def register_on_enable(name: str, action: OnEnable) -> None:
    """Register ``action`` under ``name`` (registering a name again replaces it)."""
    for i, (existing, _) in enumerate(_ACTIONS):
        if existing == name:
            _ACTIONS[i] = (name, action)
            return
    _ACTIONS.append((name, action))


def registered_actions() -> list[str]:
    """The names of the registered on-enable actions, in order."""
    _load_modules()
    return [name for name, _ in _ACTIONS]


def _load_modules() -> None:
    for module in ON_ENABLE_MODULES:
        importlib.import_module(module)


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """One on-enable action's result: ``ok`` and its one-line ``message``."""

    name: str
    ok: bool
    message: str | None


@dataclass(frozen=True, slots=True)
class FlipResult:
    """``before`` and ``after`` the call; ``changed`` is False when it was already there
    (nothing recorded); ``actions`` the on-enable outcomes (empty unless it went on)."""

    organization: str
    before: bool
    after: bool
    changed: bool
    actions: list[ActionOutcome] = field(default_factory=list)


def _lock(session: Session, name: str) -> Organization:
    get_organization(session, name)
    query = select(Organization).where(Organization.id == name).with_for_update()
    return session.exec(query).one()


def set_feature(
    engine: Engine,
    *,
    settings: Settings,
    organization: str,
    enabled: bool,
    actor: str,
    client_address: str | None = None,
    now: datetime | None = None,
    expected: bool | None = None,
    background: bool = False,
) -> FlipResult:
    """Set the feature of ``organization`` to ``enabled``.

    ``expected``: the state the caller saw (the dashboard's form carries it); when the
    organization is no longer in it (a form sent twice), nothing changes. Raises
    :class:`~sf_metadata.errors.OrganizationNotFound` and
    :class:`~sf_metadata.errors.StoreUnavailable`.
    """
    stamp = now if now is not None else datetime.now(UTC)
    with transaction(engine) as session:
        org = _lock(session, organization)
        before = org.enabled
        if before == enabled or (expected is not None and before != expected):
            return FlipResult(organization, before, before, False)
        org.enabled = enabled
        org.updated_at = stamp
        session.add(org)
        session.add(
            FeatureAudit(
                organization_id=organization,
                at=stamp,
                actor=actor[:340],
                client_address=(client_address or None) and client_address[:64],
                enabled_before=before,
                enabled_after=enabled,
            )
        )
    outcomes: list[ActionOutcome] = []
    if enabled:
        _load_modules()
        flip = FeatureFlip(organization, engine, settings, actor, stamp, background)
        for name, action in list(_ACTIONS):
            try:
                outcomes.append(ActionOutcome(name, True, action(flip)))
            except AgentProvisionError as error:
                log.warning("on-enable action %s for %s failed: %s", name, organization, error)
                outcomes.append(ActionOutcome(name, False, f"{name}: {error.message}"))
    return FlipResult(organization, before, enabled, True, outcomes)


def list_audit(session: Session, *, organization_id: str, limit: int = 50) -> list[FeatureAudit]:
    """The organization's flips, newest first (at most ``limit``)."""
    query = (
        select(FeatureAudit)
        .where(FeatureAudit.organization_id == organization_id)
        .order_by(col(FeatureAudit.id).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())
