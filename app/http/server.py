"""Serving: bind the port, run uvicorn on it, say what runs once it answers, stop on a signal.

The port is bound here, before uvicorn starts, so a port in use is one clear message; the
start-up line is written only after uvicorn listens on it. SIGTERM and SIGINT stop the service
in order (uvicorn finishes the requests in flight, then the caller's `finally` stops the
embedded PostgreSQL) and only then end the process by that signal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import h11
import msgspec
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.config import ConfigError, Settings
from schemas.errors import ErrorBody

KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection is closed after this
MAX_HEADER_BYTES = 16 * 1024  # a request head larger than this is refused (h11)
GRACEFUL_SHUTDOWN_SECONDS = 10  # requests in flight get this long after SIGTERM
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; unwinding runs every clean-up before the process ends."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """Turns SIGTERM/SIGINT into `Interrupted`, raised at once, or inside `deferred()` blocks
    (starting PostgreSQL, serving: they finish or shut down first) when the block ends."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.interruptible = True

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _: FrameType | None) -> None:
        first = self.received is None
        self.received = signum
        if first and self.interruptible:
            raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.interruptible = False
        try:
            yield
        finally:
            self.interruptible = True
        if self.received is not None:
            raise Interrupted(self.received)


def end_by_signal(signum: int) -> None:
    """End the process by `signum` with its default action, as a supervisor expects."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error} (set STATS_PORT or --port)"
        ) from None


def _head_timeout_response() -> bytes:
    """Sent to a client whose request head did not arrive in time, before the connection closes."""
    body = msgspec.json.encode(
        ErrorBody(code="request_timeout", message="the request head took too long to arrive", status=408)
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_HEAD_TIMEOUT_RESPONSE = _head_timeout_response()


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete within
    `header_timeout` seconds of the connection, or of a keep-alive request's first byte: a client
    trickling half a request line would otherwise hold its connection (and its place under
    STATS_MAX_CONNECTIONS) forever. Idle keep-alive connections are uvicorn's own timeout's."""

    header_timeout = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._expect_head()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self.conn.their_state is h11.IDLE:
            self._expect_head()  # a new request starts on a kept-alive connection
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._head_arrived()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def _expect_head(self) -> None:
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(_HEAD_TIMEOUT_RESPONSE)
            self.transport.close()


def head_timeout_protocol(seconds: float) -> type[HeadTimeoutProtocol]:
    """The protocol class uvicorn instantiates per connection, with STATS_HEADER_TIMEOUT."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"header_timeout": seconds})


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_started()


def serve(app: Any, sock: socket.socket, settings: Settings, on_started: Callable[[], None]) -> None:
    """Run uvicorn on the bound socket until a signal; `on_started` runs once it listens."""
    config = uvicorn.Config(
        app,
        log_config=None,  # every line goes through app/logging.py's handler
        log_level=settings.log_level if settings.log_level in ("warning", "error") else "warning",
        access_log=False,  # the request middleware logs each request
        http=head_timeout_protocol(settings.header_timeout),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=settings.max_connections,  # beyond it: 503 at once, never a queue
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    _Server(config, on_started).run(sockets=[sock])


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
