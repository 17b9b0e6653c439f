"""Serving an ASGI app on a loopback port from a thread, for tests that need real HTTP
(the fake authorization server, a live ``serve`` for the browser tests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import uvicorn


@contextmanager
def serve_in_thread(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", ssl: tuple[Path, Path] | None = None
) -> Iterator[str]:
    """Serve ``app`` on ``127.0.0.1`` (a free port) until the block ends; yield its base
    URL (``http://127.0.0.1:PORT``, ``https://`` with ``ssl=(certificate, key)``). Waits
    (bounded) for the server to start and stop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tls: dict[str, Any] = (
        {"ssl_certfile": str(ssl[0]), "ssl_keyfile": str(ssl[1])} if ssl is not None else {}
    )
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False, **tls)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.02)
    assert server.started, "the test server did not start"
    try:
        yield f"{'https' if ssl is not None else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
