"""Dify-shaped errors sent before any route runs: by a middleware (credentials, admission) or by
the connection itself (app/http/protocol.py). The body is the one `app/http/errors.py` sends."""

from __future__ import annotations

import msgspec
from litestar.types import Send

from schemas.errors import ErrorBody


def error_json(status: int, code: str, message: str) -> bytes:
    return msgspec.json.encode(ErrorBody(code=code, message=message, status=status))


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = error_json(status, code, message)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})
