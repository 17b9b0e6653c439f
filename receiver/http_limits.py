"""Connection limits of ``agent-provision serve`` (issue 12, item 7): idle and slow-header
connections are timed out from the moment they open, and each worker bounds its open
connections below its file-descriptor limit.

uvicorn's keep-alive timer only starts after a first response, so a connection that sends
nothing, or half a header, stays open for good; 20,000 of them exhaust a worker's file
descriptors and the kernel then refuses or resets legitimate Salesforce POSTs. The HTTP
protocol classes here (uvicorn's httptools or h11 protocol, with :class:`_Limits` mixed
in; ``serve`` passes ``http="receiver.http_limits:LimitedAutoProtocol"``) add:

- **a header deadline**: a connection must complete its request line and headers within
  ``Settings.header_timeout`` seconds (``AGENT_PROVISION_HEADER_TIMEOUT``, default 10)
  after it opened, and again after each response (a keep-alive connection); otherwise it is
  closed. A request whose headers arrived is never cut, however long the app works on it.
- **a connection cap per worker**: at most :func:`connection_cap` connections (default:
  the soft ``RLIMIT_NOFILE`` minus the listen backlog minus a reserve for the store and
  logs, at most 4096; ``AGENT_PROVISION_MAX_CONNECTIONS`` lowers it). A new connection
  beyond the cap closes the connection that has waited longest without a request; only if
  every connection has a request in progress is the new one closed instead.

A front proxy in production does the same earlier (README "Reliability": nginx
``client_header_timeout``, HAProxy ``timeout http-request``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
from collections import OrderedDict
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from receiver.settings import Settings

__all__ = [
    "BACKLOG",
    "FD_RESERVE",
    "LimitedAutoProtocol",
    "LimitedH11Protocol",
    "connection_cap",
    "raise_file_limit",
]

log = logging.getLogger("agent_provision.receiver.http")

#: Listen backlog passed to uvicorn: one accept burst holds at most this many new sockets.
BACKLOG = 256
#: Descriptors kept free beside the connections: the accept burst, the store, logs, pipes.
FD_RESERVE = BACKLOG + 128
#: Upper bound of the default cap per worker.
DEFAULT_MAX_CONNECTIONS = 4096
_MIN_CAP = 16


def raise_file_limit(target: int = 65536) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``min(hard, target)`` (inherited
    by the workers); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(configured: int | None = None) -> int:
    """Connections one worker keeps open: ``configured`` (if given) but never more than the
    soft ``RLIMIT_NOFILE`` minus :data:`FD_RESERVE`; by default at most
    :data:`DEFAULT_MAX_CONNECTIONS`; never less than 16."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = DEFAULT_MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft - FD_RESERVE
    cap = min(room, configured if configured is not None else DEFAULT_MAX_CONNECTIONS)
    return max(cap, _MIN_CAP)


@functools.cache
def _limits() -> tuple[float, int]:
    settings = Settings()
    return settings.header_timeout, connection_cap(settings.max_connections)


#: Connections waiting for a request (opened, or after a response), oldest first, per
#: process (one event loop per uvicorn worker).
_waiting: OrderedDict[Any, None] = OrderedDict()


class _Limits:
    """Mixin for uvicorn's HTTP protocols (they share ``transport``, ``cycle``,
    ``connections`` and ``loop``); see the module docstring."""

    _aap_timer: asyncio.TimerHandle | None = None
    _aap_armed: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        me: Any = self
        _, cap = _limits()
        if len(me.connections) > cap and not _evict_one(exclude=self):
            log.warning("connection limit %d reached, every connection is busy: refused", cap)
            transport.abort()
            return
        self._aap_arm(None)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        me: Any = self
        if not me.transport.is_closing():
            self._aap_arm(me.cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._aap_disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    # --- private ---------------------------------------------------------------------

    def _aap_arm(self, cycle: Any) -> None:
        me: Any = self
        self._aap_disarm()
        timeout, _ = _limits()
        self._aap_armed = cycle
        self._aap_timer = me.loop.call_later(timeout, self._aap_deadline)
        _waiting[self] = None

    def _aap_disarm(self) -> None:
        if self._aap_timer is not None:
            self._aap_timer.cancel()
            self._aap_timer = None
        _waiting.pop(self, None)

    def _aap_waiting(self) -> bool:
        """True while no request has begun since the timer was armed."""
        me: Any = self
        cycle = me.cycle
        return not me.transport.is_closing() and (
            cycle is self._aap_armed and (cycle is None or cycle.response_complete)
        )

    def _aap_deadline(self) -> None:
        me: Any = self
        self._aap_timer = None
        _waiting.pop(self, None)
        if self._aap_waiting():
            me.transport.close()


def _evict_one(exclude: Any) -> bool:
    """Close the connection that has waited longest for a request; False if none waits."""
    while _waiting:
        oldest, _ = _waiting.popitem(last=False)
        if oldest is exclude:
            continue
        if oldest._aap_waiting():
            oldest._aap_disarm()
            oldest.transport.abort()
            return True
    return False


class LimitedH11Protocol(_Limits, H11Protocol):
    """uvicorn's h11 protocol with the limits."""


LimitedAutoProtocol: type[asyncio.Protocol]
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(_Limits, HttpToolsProtocol):
        """uvicorn's httptools protocol with the limits."""

    LimitedAutoProtocol = LimitedHttpToolsProtocol
except ImportError:  # httptools is optional: uvicorn falls back to h11 the same way
    LimitedAutoProtocol = LimitedH11Protocol
