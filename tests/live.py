"""Run an ASGI app with uvicorn on a free loopback port, for tests that need real concurrency
(litestar's test clients hand requests to the app one at a time)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) while the server runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def get_all(base_url: str, requests: list[tuple[str, dict[str, str]]]) -> list[Any]:
    """Send every (path, headers) at once over real connections; answers in request order."""
    import asyncio

    import httpx

    limits = httpx.Limits(max_connections=len(requests) + 1)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        return list(await asyncio.gather(*(client.get(path, headers=headers) for path, headers in requests)))
