"""Fair sharing of a pool between tenants: one tenant holds at most its share of connections.

A semaphore per tenant in front of the pool (STATS_TENANT_SHARE of STATS_POOL_SIZE, at least one
slot), so a tenant flooding the service with expensive ranges waits behind itself while other
tenants still find free connections. Semaphores exist only while someone holds or awaits one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# The tenant the current request reads, set where the request's tenant is known (the console
# authorizer, the routes); statements without it are limited by the tenant they are bound to.
current_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


class _Slots:
    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0  # holding or waiting


class TenantSlots:
    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._slots: dict[str, _Slots] = {}

    @asynccontextmanager
    async def hold(self, tenant: str | None) -> AsyncIterator[None]:
        """One of the tenant's slots for the duration; no limit for statements of no tenant
        (readiness, the app list across tenants)."""
        if tenant is None:
            yield
            return
        slots = self._slots.get(tenant)
        if slots is None:
            slots = self._slots[tenant] = _Slots(self.per_tenant)
        slots.users += 1
        try:
            async with slots.semaphore:
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._slots[tenant]
