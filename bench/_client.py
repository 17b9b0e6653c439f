"""Concurrent Outbound Message clients (httpx, loopback only).

:class:`Poster` sends a list of message bodies from K concurrent clients. With
``retry=True`` it behaves like Salesforce's delivery queue (reference
``outbound-wire-format.md`` section 2.2): every message that gets no HTTP 200 with
``<Ack>true</Ack>`` (a 5xx, a SOAP fault, a dropped connection, a timeout) is sent again
after a short, growing pause, until it is acknowledged or ``max_attempts`` is spent.
Everything is bounded: attempts per message, and a per-request timeout.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

__all__ = ["Delivery", "Poster", "is_ack"]

_ACK = re.compile(rb"<(?:\w+:)?Ack>\s*true\s*</(?:\w+:)?Ack>")
_HEADERS = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}


def is_ack(status: int, body: bytes) -> bool:
    """Whether a response acknowledges the message: HTTP 200 and ``Ack`` true."""
    return status == 200 and _ACK.search(body) is not None


@dataclass(slots=True)
class Delivery:
    """What happened to one message: ``statuses`` of each attempt (``0`` for a transport
    error), ``ack_seconds`` from the first send of the acknowledged attempt to its Ack
    (``None`` if never acknowledged)."""

    index: int
    statuses: list[int] = field(default_factory=list)
    ack_seconds: float | None = None

    @property
    def acked(self) -> bool:
        """Whether an attempt was acknowledged."""
        return self.ack_seconds is not None


class Poster:
    """Send ``bodies`` to ``url`` from ``concurrency`` clients.

    ``inflight``, ``acked``, ``attempts`` and ``failures`` are live counters another
    thread may read; every change to them is announced, so :meth:`wait_for` sees every
    state they pass through, not samples of them (the fault tests kill the server in the
    first state with ``acked >= N`` and ``inflight > 0``). :meth:`hold` stops the clients
    from starting a new attempt (the ones in flight finish) until :meth:`release`, so a
    test can inject a fault between two known states. ``run()`` returns one
    :class:`Delivery` per body, in body order. ``retry=False`` sends each body once (the benchmark: every message
    must be acknowledged first time).
    """

    def __init__(
        self,
        url: str,
        bodies: Sequence[bytes],
        *,
        concurrency: int = 4,
        retry: bool = False,
        max_attempts: int = 60,
        request_timeout: float = 60.0,
        pause: float = 0.05,
        max_pause: float = 1.0,
    ) -> None:
        self.url = url
        self.bodies = bodies
        self.concurrency = concurrency
        self.retry = retry
        self.max_attempts = max_attempts
        self.request_timeout = request_timeout
        self.pause = pause
        self.max_pause = max_pause
        self.inflight = 0
        self.acked = 0
        self.attempts = 0
        self.failures = 0
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._finished = False
        self._open = threading.Event()
        self._open.set()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def run(self) -> list[Delivery]:
        """Send everything; blocks until every body is acknowledged or given up."""
        self.deliveries = asyncio.run(self._run())
        return self.deliveries

    def start(self) -> Poster:
        """Run :meth:`run` in a background thread (the caller injects faults meanwhile)."""

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # reported by join()
                self._error = exc
            finally:
                with self._changed:
                    self._finished = True
                    self._changed.notify_all()

        self._thread = threading.Thread(target=target, name="poster", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> list[Delivery]:
        """Wait for :meth:`start`'s thread; re-raise its error; ``RuntimeError`` if it is
        still running after ``timeout`` seconds."""
        assert self._thread is not None, "start() first"
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the clients did not finish in {timeout} s")
        if self._error is not None:
            raise self._error
        return self.deliveries

    def hold(self) -> None:
        """Start no new attempt until :meth:`release` (attempts in flight go on)."""
        self._open.clear()

    def release(self) -> None:
        """Let the clients start attempts again."""
        self._open.set()

    def wait_for(
        self,
        condition: Callable[[Poster], bool],
        timeout: float,
        *,
        then: Callable[[], None] | None = None,
    ) -> bool:
        """Wait at most ``timeout`` seconds for ``condition(self)`` to hold, evaluated at
        each change of the counters (and once at the start), until :meth:`start`'s thread
        ends. If it holds and ``then`` is given, ``then()`` runs before any counter can
        change again: a fault injected there meets exactly the state the condition saw
        (the requests it counted in flight have not been answered to the clients yet)."""
        with self._changed:
            held = self._changed.wait_for(
                lambda: condition(self) or self._finished, timeout=timeout
            )
            held = bool(held) and condition(self)
            if held and then is not None:
                then()
            return held

    async def _run(self) -> list[Delivery]:
        deliveries = [Delivery(i) for i in range(len(self.bodies))]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(self.bodies)):
            queue.put_nowait(i)
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        timeout = httpx.Timeout(self.request_timeout)
        async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
            workers = [
                asyncio.create_task(self._worker(client, queue, deliveries))
                for _ in range(self.concurrency)
            ]
            await asyncio.gather(*workers)
        return deliveries

    async def _worker(
        self, client: httpx.AsyncClient, queue: asyncio.Queue[int], deliveries: list[Delivery]
    ) -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._deliver(client, deliveries[index])

    def _count(self, **deltas: int) -> None:
        """Add ``deltas`` to the named counters and announce the new state."""
        with self._changed:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)
            self._changed.notify_all()

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        body = self.bodies[delivery.index]
        pause = self.pause
        for _attempt in range(self.max_attempts if self.retry else 1):
            while not self._open.is_set():
                await asyncio.sleep(0.005)
            start = time.perf_counter()
            self._count(inflight=1, attempts=1)
            try:
                response = await client.post(self.url, content=body, headers=_HEADERS)
                status, content = response.status_code, response.content
            except httpx.TransportError:
                status, content = 0, b""
            finally:
                self._count(inflight=-1)
            delivery.statuses.append(status)
            if is_ack(status, content):
                delivery.ack_seconds = time.perf_counter() - start
                self._count(acked=1)
                return
            self._count(failures=1)
            if self.retry:
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.max_pause)
