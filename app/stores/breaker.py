"""A circuit breaker per source: fail fast while a store is known down, one probe re-checks it.

Closed (normal): queries go to the pool. When a connection fails, or a query waits for a pooled
connection longer than a moment, one shared probe (a fresh connection and the connection check of
queries/checks.py, bounded by PROBE_TIMEOUT) decides: if the store does not answer, the breaker
opens. Open: every query fails at once (the cache serves `stale` or the API a 503) while a single
background probe retries every STATS_PROBE_INTERVAL; its first success closes the breaker.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import structlog

log = structlog.get_logger("dify_stats.breaker")

# A probe is one connection and one trivial statement: on loopback milliseconds, on SLS across
# a region a few hundred. Longer than this, the store counts as not answering.
PROBE_TIMEOUT = 1.5

BreakerState = Literal["closed", "open"]


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[None]],
        interval: float,
        recovered: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._recovered = recovered
        self.interval = interval
        self._probe = probe
        self._clock = clock
        self.state: BreakerState = "closed"
        self.opened_at: float | None = None
        self._answered_at = float("-inf")  # the last time the store answered a query
        self._probed_at = float("-inf")  # the last time a probe succeeded
        self._checking: asyncio.Task[bool] | None = None
        self._reprobing: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def answered(self) -> None:
        """The store just answered a query."""
        self._answered_at = self._clock()

    def suspect(self) -> None:
        """A connection failed: check the store in the background (the check opens the breaker)."""
        if not self.is_open:
            self._start_check()

    def answered_lately(self) -> bool:
        return self._clock() - self._answered_at < self.interval

    async def confirm(self) -> bool:
        """Whether the store answers now: the verdict of a probe, shared by every caller within
        one interval (a query answered just before the store went down proves nothing)."""
        if self.is_open:
            return False
        if self._clock() - self._probed_at < self.interval:
            return True
        return await asyncio.shield(self._start_check())

    async def close(self) -> None:
        for task in (self._checking, self._reprobing):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _start_check(self) -> asyncio.Task[bool]:
        if self._checking is None or self._checking.done():
            # A context of its own: the probe belongs to no request (nor its log fields).
            self._checking = asyncio.create_task(self._check(), context=contextvars.Context())
        return self._checking

    async def _probe_once(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self._probe()
        except Exception as error:
            log.debug("probe_failed", source=self.name, error_type=type(error).__name__)
            return False
        self._probed_at = self._clock()
        return True

    async def _check(self) -> bool:
        if await self._probe_once():
            return True
        if not self.is_open:
            self.state, self.opened_at = "open", self._clock()
            log.warning("circuit_open", source=self.name, probe_every_s=self.interval)
            self._reprobing = asyncio.create_task(self._reprobe(), context=contextvars.Context())
        return False

    async def _reprobe(self) -> None:
        """While open: one probe every interval; the first that succeeds closes the breaker."""
        while True:
            await asyncio.sleep(self.interval)
            if await self._probe_once():
                break
        if self._recovered is not None:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self._recovered()
            except Exception as error:
                log.debug("recovery_step_failed", source=self.name, error_type=type(error).__name__)
        down_for = self._clock() - (self.opened_at or self._clock())
        self.state, self.opened_at = "closed", None
        log.info("circuit_closed", source=self.name, open_s=round(down_for, 2))
