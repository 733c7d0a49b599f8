"""Serving: bind the port, run uvicorn on it, say what runs once it answers, stop on a signal.

The port is bound here, before uvicorn starts, so a port in use is one clear message; the
start-up line is written only after uvicorn listens on it. SIGTERM and SIGINT stop the service
in order (uvicorn finishes the requests in flight, then the caller's `finally` stops the
embedded PostgreSQL) and only then end the process by that signal.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn

from app.config import ConfigError, Settings
from app.http.protocol import connection_protocol

KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection is closed after this
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
        # Timeouts, the head's size and the connection cap live in the protocol (app/http/protocol.py).
        http=connection_protocol(settings.header_timeout, settings.body_timeout, settings.max_connections),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    _Server(config, on_started).run(sockets=[sock])


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
