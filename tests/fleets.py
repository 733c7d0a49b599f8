"""Replicas' fleets for tests: each its own link to one Redis, under a prefix of their own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from app.config import RedisSettings
from app.fleet import Fleet


@contextmanager
def fleets(
    loop: asyncio.AbstractEventLoop, settings: Any, redis_url: str, count: int
) -> Iterator[list[Fleet]]:
    """`count` replicas' links to one Redis, under a prefix of their own (nothing of an earlier
    example is seen)."""
    redis = RedisSettings(url=redis_url, prefix=f"prop-{uuid.uuid4().hex}:")
    shared = [Fleet(msgspec.structs.replace(settings, redis=redis)) for _ in range(count)]
    try:
        yield shared
    finally:
        for fleet in shared:
            loop.run_until_complete(fleet.close())
