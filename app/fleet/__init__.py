"""The Redis layer replicas share: answers, settled days, kept runs and the query budget.

`Fleet` is built once from the settings and is the one place that asks whether there is a Redis
(STATS_REDIS_URL, or Sentinel). With one, it links to it and offers the shared stores; without,
it offers what one process does alone (app/core/shared.Shared.alone) and no fleet budget. The
core, the stores and the HTTP edge see only the stores' Protocols.
"""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.core.settled import LocalSettledDays
from app.core.shared import Shared
from app.fleet.answers import LOAD_WAIT_TIMEOUTS, SharedAnswers
from app.fleet.budget import FleetBudget
from app.fleet.kept_runs import SharedRuns
from app.fleet.link import RedisLink
from app.fleet.settled import FleetSettledDays
from app.metrics import Metrics
from app.stores.budget import Budget


class Fleet:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.link = RedisLink(settings.redis, metrics) if settings.redis is not None else None
        self._budgets: list[FleetBudget] = []
        if self.link is None:
            self.shared = Shared.alone(settings)
            return
        wait_s = LOAD_WAIT_TIMEOUTS * settings.query_timeout  # for another replica's load
        alone = LocalSettledDays(settings.settled_days_max, settings.tenant_share)
        self.shared = Shared(
            SharedAnswers(self.link, settings.stale_max, metrics, wait_s),
            SharedRuns(self.link, int(settings.live_runs_max * settings.tenant_share), wait_s),
            FleetSettledDays(self.link, alone, wait_s),
            near=settings.near_cache,
        )

    def budget(self, identity: str, alone: Budget) -> Budget:
        """The budget of one store's statements (`identity`: the store, the same on every
        replica): the fleet's with Redis, else `alone`, this process's own."""
        if self.link is None:
            return alone
        budget = FleetBudget(
            self.link, identity, self.settings.pool_size, self.settings.tenant_share, self.metrics
        )
        self._budgets.append(budget)
        return budget

    async def start(self) -> None:
        if self.link is not None:
            await self.link.start()
        for budget in self._budgets:
            budget.start()

    async def close(self) -> None:
        for budget in self._budgets:
            await budget.close()
        if self.link is not None:
            await self.link.close()

    @staticmethod
    def describe(settings: Settings) -> str:
        """The start-up line's word on it: the Redis (no password), or that this runs alone."""
        return settings.redis.redacted() if settings.redis is not None else "off (one replica)"

    def readiness(self) -> dict[str, Any]:
        """What /readyz says of the fleet: nothing alone; Redis up or down (then this replica
        answers alone: its own caches, its share of the budget), the replicas seen, and whether the
        budget is the fleet's."""
        if self.link is None:
            return {}
        # "local": Redis is away, or answers but refuses the budget's script; either way this
        # replica runs on its share of STATS_POOL_SIZE.
        local = not self.link.up or any(budget.local for budget in self._budgets)
        return {
            "redis": self.link.state,
            "replicas_seen": self.link.replicas_seen,
            "budget": "local" if local else "fleet",
        }
