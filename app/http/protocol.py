"""The HTTP/1.1 connection: uvicorn's h11 protocol, with the limits a client meets before any
route sees its request.

- `TCP_NODELAY` on every accepted socket. asyncio sets it only on sockets created with
  `IPPROTO_TCP`, which a listening socket made by `socket.create_server` (or handed over by a
  supervisor) is not; without it a response's second write waits for the client's delayed
  acknowledgement, ~40 ms on every request after the first on a kept-alive connection.
- A request's head must arrive within STATS_HEADER_TIMEOUT (from connecting, or from a
  kept-alive request's first byte) and its body within STATS_BODY_TIMEOUT of the head's end, in
  total, not per read, so trickling a byte at a time holds a connection no longer. Then 408 and
  the connection closes (only closes, when the route already answered).
- A head over MAX_HEADER_BYTES is a 431, whether h11 still waits for its end or has it whole.
- A request that h11 cannot parse (a garbage request line, a bad chunk size) is a 400 (501 for
  a transfer coding other than chunked).
- Beyond STATS_MAX_CONNECTIONS open connections (or requests in progress) a request is a 503 at
  once, never a queue.

Every one of these answers is Dify's error shape, `{"code", "message", "status"}`, and ends the
connection, since what the client sends next cannot be read as a request.
"""

from __future__ import annotations

import asyncio
import re
import socket
from http import HTTPStatus
from typing import Any, Literal

import h11
from litestar.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.http.early_errors import error_json, send_error

MAX_HEADER_BYTES = 16 * 1024  # request line and header lines, CRLFs included
# h11's reason may end by quoting the client's bytes (`illegal chunk header: b'zz\r\n'`); that part
# is not sent back.
_QUOTED_BYTES = re.compile(r":?\s*(?:bytearray\()?\bb['\"].*", re.DOTALL)
_CODES = {
    400: "bad_request",
    408: "request_timeout",
    431: "request_header_fields_too_large",
    501: "not_implemented",
    503: "overloaded",
}
Phase = Literal["head", "body"]


def refusal(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 response in Dify's error shape that closes the connection."""
    body = error_json(status, _CODES[status], message)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def head_bytes(request: h11.Request) -> int:
    """The size of the request's head as sent: request line, header lines, blank line."""
    request_line = len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n")
    header_lines = sum(len(name) + len(value) + len(b": \r\n") for name, value in request.headers.raw_items())
    return request_line + header_lines + len(b"\r\n")


class _Connection(h11.Connection):
    """h11's connection, also refusing a head larger than MAX_HEADER_BYTES that arrived whole
    (h11's own limit applies only while it waits for a head's end), and keeping the protocol
    error it raised, whose status hint the answer uses."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
            if isinstance(event, h11.Request) and head_bytes(event) > MAX_HEADER_BYTES:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            return event
        except h11.RemoteProtocolError as error:
            self.error = error
            raise


class LimitedH11Protocol(H11Protocol):
    """One client connection. The class attributes are set per service by `connection_protocol`."""

    head_timeout = 10.0
    body_timeout = 10.0
    max_connections = 1000

    conn: _Connection
    _deadline: asyncio.TimerHandle | None = None
    _phase: Phase | None = None  # what the running deadline waits for

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.app = self._app_within_capacity

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._expect("head")

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._expect("head")  # a new request starts on a kept-alive connection
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot read, in Dify's shape."""
        error = self.conn.error
        status = error.error_status_hint if error is not None and error.error_status_hint in _CODES else 400
        if status == 431:
            message = f"the request head is larger than {MAX_HEADER_BYTES} bytes (16 KiB)"
        else:
            reason = _QUOTED_BYTES.sub("", str(error) if error is not None else msg)
            message = f"malformed HTTP/1.1 request: {reason}"
        self._refuse(status, message)

    async def _app_within_capacity(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application, or a 503 while STATS_MAX_CONNECTIONS connections are open or as many
        requests are in progress (this one's task already counts among them)."""
        if len(self.connections) >= self.max_connections or len(self.tasks) > self.max_connections:
            message = "too many connections (STATS_MAX_CONNECTIONS); try again shortly"
            await send_error(send, 503, _CODES[503], message, {"Connection": "close", "Retry-After": "1"})
            return
        await self.config.loaded_app(scope, receive, send)

    def _follow_request(self) -> None:
        """Start the body's deadline once the head is read; stop it once the request is whole."""
        state = self.conn.their_state
        if self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            self._stop_deadline()  # read whole (DONE), or the connection is ending
        elif state is h11.SEND_BODY and self._phase != "body":
            self._expect("body")

    def _expect(self, phase: Phase) -> None:
        self._stop_deadline()
        seconds = self.head_timeout if phase == "head" else self.body_timeout
        self._deadline = self.loop.call_later(seconds, self._timed_out)
        self._phase = phase

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._phase = None

    def _timed_out(self) -> None:
        self._deadline = None
        state = self.conn.their_state
        if self.transport.is_closing():
            pass
        elif self._phase == "head" and state is h11.IDLE:
            self._refuse(408, "the request head took too long to arrive (STATS_HEADER_TIMEOUT)")
        elif self._phase == "body" and state is h11.SEND_BODY:
            self._refuse(408, "the request body took too long to arrive (STATS_BODY_TIMEOUT)")
        self._phase = None

    def _refuse(self, status: int, message: str) -> None:
        """Answer in Dify's shape and close; only close when the route already began answering
        this request (one request gets one answer)."""
        if not (self._phase == "body" and self.cycle is not None and self.cycle.response_started):
            self.transport.write(refusal(status, message))
        self.transport.close()


def connection_protocol(
    head_timeout: float, body_timeout: float, max_connections: int
) -> type[LimitedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with this service's limits."""
    limits = {"head_timeout": head_timeout, "body_timeout": body_timeout, "max_connections": max_connections}
    return type("LimitedH11Protocol", (LimitedH11Protocol,), limits)
