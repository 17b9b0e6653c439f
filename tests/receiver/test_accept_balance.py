"""receiver.accept_balance: a worker accepts at once while it holds no connection, defers
its next accept while it holds some (another worker woken by the same connection takes it
first), still accepts every connection, and never re-arms a closed listening socket."""

from __future__ import annotations

import asyncio
import socket

import pytest

from receiver import accept_balance
from receiver.accept_balance import BalancedEventLoop


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


def _run(coro_factory):
    loop = BalancedEventLoop()
    try:
        return loop.run_until_complete(coro_factory(loop))
    finally:
        loop.close()


async def _listen(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Server, int, list[_Echo]]:
    """A server on a free loopback port and the list of the protocols it made."""
    protocols: list[_Echo] = []

    def factory() -> _Echo:
        protocols.append(_Echo())
        return protocols[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], protocols


async def _connected(loop: asyncio.AbstractEventLoop, port: int) -> socket.socket:
    client = socket.socket()
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    return client


async def _wait_for(predicate, loop: asyncio.AbstractEventLoop) -> None:
    for _ in range(5000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def _connect_one_by_one(monkeypatch: pytest.MonkeyPatch, count: int) -> tuple[int, list[float]]:
    """Connect ``count`` clients one after the other (each accepted before the next);
    return how many the server accepted and the delays of its deferred accepts."""
    deferred: list[float] = []
    original = BalancedEventLoop.call_later

    def spy(self, delay, callback, *args, **kwargs):
        if getattr(callback, "__name__", "") == "_accept_one_and_rearm":
            deferred.append(delay)
        return original(self, delay, callback, *args, **kwargs)

    monkeypatch.setattr(BalancedEventLoop, "call_later", spy)

    async def scenario(loop: asyncio.AbstractEventLoop) -> int:
        server, port, protocols = await _listen(loop)
        clients = []
        for expected in range(1, count + 1):
            clients.append(await _connected(loop, port))
            await _wait_for(lambda n=expected: len(protocols) == n, loop)
        server.close()
        await server.wait_closed()
        for client in clients:
            client.close()
        return len(protocols)

    return _run(scenario), deferred


def test_every_connection_is_accepted_and_later_ones_are_deferred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted, delays = _connect_one_by_one(monkeypatch, 4)
    assert accepted == 4
    # the first connection at once; the 2nd, 3rd, 4th after 1, 2, 3 steps
    assert delays == [n * accept_balance.STEP_S for n in (1, 2, 3)]


def test_from_spread_below_connections_on_it_accepts_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(accept_balance, "SPREAD_BELOW", 2)
    accepted, delays = _connect_one_by_one(monkeypatch, 5)
    assert accepted == 5
    assert delays == [accept_balance.STEP_S]  # only the 2nd: from 2 held on, at once


def test_a_server_closed_during_the_deferral_is_left_closed() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[int, list[object]]:
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        server, port, protocols = await _listen(loop)
        first = await _connected(loop, port)
        await _wait_for(lambda: len(protocols) == 1, loop)
        second = await _connected(loop, port)  # deferred: one connection is held
        for _ in range(3):
            await asyncio.sleep(0)
        server.close()
        await asyncio.sleep(accept_balance.STEP_S * 5)  # the deferred accept has run
        first.close()
        second.close()
        return len(protocols), errors

    accepted, errors = _run(scenario)
    assert accepted == 1
    assert errors == []  # no accept on, nor re-arming of, the closed socket


class _Transport:
    def __init__(self, closing: bool) -> None:
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing


def test_only_open_connections_count_as_held() -> None:
    # A closed keep-alive connection's transport lingers in _transports until it is
    # garbage: counted, it made a worker that had served many defer every accept.
    loop = BalancedEventLoop()
    try:
        kept = [_Transport(closing=True) for _ in range(40)] + [_Transport(closing=False)] * 3
        for fd, transport in enumerate(kept, start=1000):
            loop._transports[fd] = transport  # type: ignore[attr-defined]
        assert loop.held_connections() == 3
        for transport in kept:
            transport.closing = False
        assert loop.held_connections() == accept_balance.SPREAD_BELOW  # counted up to there
        loop._transports.clear()  # type: ignore[attr-defined]
    finally:
        loop.close()


class _FailingListener:
    """A listening socket whose accept fails with ``error``."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        self.real = socket.socket()

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        raise self.error


@pytest.mark.parametrize("errno_name", ["EMFILE", "ENFILE"])
def test_out_of_descriptors_the_listener_waits_for_asyncios_own_retry(errno_name: str) -> None:
    import errno

    loop = BalancedEventLoop()
    listener = _FailingListener(OSError(getattr(errno, errno_name), "Too many open files"))
    rearmed: list[object] = []
    loop._start_serving = lambda *args: rearmed.append(args)  # type: ignore[attr-defined]
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        loop._accept_one_and_rearm((asyncio.Protocol, listener, None, None, 100))
        assert rearmed == []  # not at once: that retried every few ms, with a log line each
        [retry] = loop._scheduled  # type: ignore[attr-defined]
        assert retry.when() - loop.time() > 0.5  # asyncio's ACCEPT_RETRY_DELAY, 1 s
    finally:
        listener.real.close()
        loop.close()


def test_any_other_accept_error_still_rearms_the_listener() -> None:
    import errno

    loop = BalancedEventLoop()
    listener = _FailingListener(OSError(errno.EPERM, "refused by a firewall rule"))
    rearmed: list[object] = []
    loop._start_serving = lambda *args: rearmed.append(args)  # type: ignore[attr-defined]
    try:
        with pytest.raises(OSError):
            loop._accept_one_and_rearm((asyncio.Protocol, listener, None, None, 100))
        assert len(rearmed) == 1  # the worker keeps accepting
    finally:
        listener.real.close()
        loop.close()
