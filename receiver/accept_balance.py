"""Spread new connections over ``serve --workers N`` (issue 11 item 4: ``--workers 2`` on
SQLite must not be slower than one worker).

uvicorn's workers share one listening socket. A new connection wakes every worker, and the
first one to run takes every connection waiting (uvloop's and asyncio's accept loops both
drain the queue), so a burst of keep-alive clients (Salesforce's delivery queue, a proxy's
pool, ``bench/ingest.py``'s 4 clients) often lands on one worker: measured 36 / 8 and
38 / 6 of 44 messages on two workers, with the other worker idle while the busy one's
threads fight over its interpreter lock.

:class:`BalancedEventLoop` (``serve`` passes
``loop="receiver.accept_balance:BalancedEventLoop"`` to uvicorn, the loop factory, when
``--workers`` > 1) is an asyncio event loop that accepts one connection per wake-up and, while it
already holds ``n`` open connections (``n`` below :data:`SPREAD_BELOW`), waits ``n`` x
:data:`STEP_S` before taking the next one: a worker holding fewer connections, woken by
the same connection, takes it first. From :data:`SPREAD_BELOW` open connections on, a
worker accepts as asyncio does (every connection waiting, at once), so a flood of
connections is accepted at the usual rate (``receiver.http_limits`` then applies its cap).

It hooks asyncio's ``BaseSelectorEventLoop._accept_connection`` (CPython 3.11 to 3.13:
same signature; asyncio itself re-arms the listening socket with ``_start_serving`` after
``EMFILE``, in one second: then this loop does not re-arm it sooner), and reads
``_transports`` (open connections: only those not closing count) and ``_scheduled``.
Errors: none of its own; a closed listening socket is never re-armed, and an error
raised by the deferred accept still re-arms it.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["SPREAD_BELOW", "STEP_S", "BalancedEventLoop"]

#: A worker holding this many open connections or more accepts without waiting.
SPREAD_BELOW = 16
#: Seconds a worker waits before accepting, per open connection it holds.
STEP_S = 0.005


class BalancedEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose listening sockets accept as the module docstring says."""

    def held_connections(self) -> int:
        """The open connections this loop holds, counted up to :data:`SPREAD_BELOW`.

        ``_transports`` keeps a transport until it is garbage, and a closed keep-alive
        connection's transport lingers there (measured: 193 of 200 closed ones after
        ``gc.collect()``); counting those made a worker that had served many short
        connections defer every accept for good, so only transports not closing count."""
        held = 0
        for transport in list(self._transports.values()):  # type: ignore[attr-defined]
            if not transport.is_closing():
                held += 1
                if held >= SPREAD_BELOW:
                    break
        return held

    def _accept_connection(
        self,
        protocol_factory: Any,
        sock: Any,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *rest: Any,
    ) -> None:
        held = self.held_connections()
        if held >= SPREAD_BELOW:
            super()._accept_connection(  # type: ignore[misc]
                protocol_factory, sock, sslcontext, server, backlog, *rest
            )
            return
        if held == 0:
            super()._accept_connection(  # type: ignore[misc]
                protocol_factory, sock, sslcontext, server, 1, *rest
            )
            return
        self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
        self.call_later(
            held * STEP_S,
            self._accept_one_and_rearm,
            (protocol_factory, sock, sslcontext, server, backlog, *rest),
        )

    def _accept_one_and_rearm(self, serving: tuple[Any, ...]) -> None:
        protocol_factory, sock, sslcontext, server, backlog, *rest = serving
        if sock.fileno() == -1:  # the server closed meanwhile
            return
        timers = len(self._scheduled)  # type: ignore[attr-defined]
        try:
            super()._accept_connection(  # type: ignore[misc]
                protocol_factory, sock, sslcontext, server, 1, *rest
            )
        finally:
            # Out of file descriptors (EMFILE and kin), asyncio's accept already scheduled
            # its own re-arm (in ACCEPT_RETRY_DELAY, 1 s): the one timer it adds.
            if len(self._scheduled) == timers and sock.fileno() != -1:  # type: ignore[attr-defined]
                self._start_serving(  # type: ignore[attr-defined]
                    protocol_factory, sock, sslcontext, server, backlog, *rest
                )
