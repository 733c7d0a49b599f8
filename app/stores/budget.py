"""The query budget: how many statements may run against a source at once.

Alone, a replica's budget is STATS_POOL_SIZE statements (its pool's connections), one tenant at
most STATS_TENANT_SHARE of them (app/stores/fairness.py). SLS allows 15 concurrent statements per
project, shared with Dify's own readers, and refuses the 16th: with N replicas each keeping its
own budget, N x STATS_POOL_SIZE could run at once.

With Redis (`FleetBudget`, app/fleet/budget.py), STATS_POOL_SIZE is the whole fleet's budget.
Every statement holds a slot: a lease on Redis's own clock (never a replica's), renewed while the
statement runs, gone LEASE_MS after its holder died. Waiters queue by ticket across replicas and
are served in that order, skipping only a waiter whose tenant already holds its share, so none
starves and one replica alone may use the whole budget; a freed slot goes to the next waiter in
the script that frees it.

When Redis does not answer (or refuses the budget's script), a replica falls back to a local
share: STATS_POOL_SIZE divided by the replicas last seen alive, at least one; /readyz then says
`"budget": "local"`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from psycopg.conninfo import conninfo_to_dict

from app.stores.fairness import TenantSlots


class Budget(Protocol):
    def hold(self, tenant: str | None) -> AbstractAsyncContextManager[None]:
        """One slot for the duration; a statement of no tenant (readiness, every tenant's apps) is
        not limited by a tenant's share."""
        ...


class LocalBudget:
    """One process's budget: `size` statements at once, one tenant at most its share."""

    def __init__(self, size: int, tenant_share: float) -> None:
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self.tenants = TenantSlots(max(1, int(size * tenant_share)))

    @asynccontextmanager
    async def hold(self, tenant: str | None) -> AsyncIterator[None]:
        async with self.tenants.hold(tenant), self._slots:
            yield


def store_identity(conninfo: str, name: str) -> str:
    """The same on every replica reading the same store (host, port, database), different for
    another store sharing the Redis: the budget is the store's, not the deployment's."""
    parts = conninfo_to_dict(conninfo)
    where = "|".join(str(parts.get(field, "")) for field in ("host", "port", "dbname"))
    return f"{name}:{hashlib.sha256(where.encode()).hexdigest()[:12]}"
