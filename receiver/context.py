"""Types the routes share with :func:`receiver.app.create_app`, in a leaf module so that
``receiver/app.py`` imports the routes and no route imports ``receiver/app.py`` (as
starlette keeps ``Scope``, ``ASGIApp`` and ``Lifespan`` in ``starlette/types.py``).

A route finds the :class:`ReceiverContext` in ``request.app.state.context``; use
:func:`context_of` to get it typed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from starlette.requests import HTTPConnection

    from receiver.sessions import SessionHooks
    from receiver.settings import Settings

__all__ = ["Clock", "ReceiverContext", "context_of", "utc_now"]

#: A clock returns the current time as an aware UTC datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, aware UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ReceiverContext:
    """What the routes need, built once per app: ``settings``; ``engine`` (the store);
    ``clock`` (aware UTC now); ``hooks`` (session-ended callbacks for the host app, or
    ``None``). Pruning keeps no state here: ``receiver.maintenance`` runs on the
    scheduler."""

    settings: Settings
    engine: Engine
    clock: Clock
    hooks: SessionHooks | None


def context_of(connection: HTTPConnection) -> ReceiverContext:
    """The :class:`ReceiverContext` that :func:`~receiver.app.create_app` stored in
    ``app.state.context`` (a request or a websocket)."""
    context: ReceiverContext = connection.app.state.context
    return context
