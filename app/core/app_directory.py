"""Which apps each tenant has: Grafana's app list and its check that a key may read an app.

Who may read what is decided by the caller's key and the source, never by anything in Redis: this
list is read from the source and kept in this process only (each replica reads its own, every
REFRESH_S; identical misses share one read). It covers the history Grafana's ranges may ask for:
the apps with runs written in the last STATS_MAX_RANGE_DAYS days, or in the LogStore's retention
(ALIYUN_SLS_LOGSTORE_TTL) when that is longer. An app's tenant never changes, so while the store
fails the last list read is kept (for up to a day): it is still right about whom each app belongs
to, and only misses apps created since.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.config import Settings
from app.core.cache import AnswerCache
from app.stores.repository import StatsRepository

REFRESH_S = 300.0
KEPT_WHILE_FAILING_S = 86_400.0


def history_days(settings: Settings) -> int:
    """How far back the list looks: as far as a range may reach, or the store keeps runs."""
    return max(settings.max_range_days, settings.logstore_ttl_days or 0)


class AppDirectory:
    def __init__(
        self, repository: StatsRepository, settings: Settings, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.repository = repository
        self.days = history_days(settings)
        self.wall_clock = wall_clock
        self._read = AnswerCache(1, KEPT_WHILE_FAILING_S)  # in this process only: no shared tier

    async def apps(self) -> list[tuple[str, str, int]]:
        """(tenant_id, app_id, runs) of every tenant's apps with runs in the history, busiest first."""
        since_s = int(self.wall_clock()) - self.days * 86_400
        apps, _ = await self._read.get_or_load(
            ("apps", self.days), REFRESH_S, lambda: self.repository.apps(since_s), tenant=""
        )
        return apps
