"""The one tenant-fair LRU behind every in-process store: answers, settled days, kept runs.

Bounded by a total weight (entries, runs), least recently used first; each tenant holds at most
STATS_TENANT_SHARE of it, and a tenant at its share evicts its own least recently used entries,
so one tenant's flood cannot flush the others'.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K")
V = TypeVar("V")


class _Evicting(LRUCache[K, V], Generic[K, V]):
    """An LRUCache that reports each entry it evicts to make room."""

    def __init__(self, maxsize: int, evicted: Callable[[K], None], getsizeof: Callable[[V], float]) -> None:
        super().__init__(maxsize=maxsize, getsizeof=getsizeof)
        self._evicted = evicted

    def popitem(self) -> tuple[K, V]:
        key, value = super().popitem()
        self._evicted(key)
        return key, value


class TenantLRU(Generic[V]):
    def __init__(self, max_weight: int, tenant_share: float, weigh: Callable[[V], int] = lambda _: 1) -> None:
        self.max_weight = max(1, max_weight)
        self.tenant_max = max(1, int(max_weight * tenant_share))
        self._weigh = weigh
        self._all: _Evicting[tuple[str, Hashable], V] = _Evicting(
            self.max_weight, self._evicted_globally, weigh
        )
        self._by_tenant: dict[str, _Evicting[Hashable, V]] = {}

    def __len__(self) -> int:
        return len(self._all)

    @property
    def weight(self) -> int:
        return int(self._all.currsize)

    def tenant_entries(self, tenant: str) -> int:
        own = self._by_tenant.get(tenant)
        return 0 if own is None else len(own)

    def get(self, tenant: str, key: Hashable) -> V | None:
        value = self._all.get((tenant, key))
        if value is not None:
            self._by_tenant[tenant][key]  # its use counts in the tenant's order too
        return value

    def put(self, tenant: str, key: Hashable, value: V) -> bool:
        """Keep (or re-weigh) a value; False, and nothing kept, when it alone exceeds a tenant's share."""
        self.pop(tenant, key)
        if self._weigh(value) > self.tenant_max:
            return False
        own = self._by_tenant.get(tenant)
        if own is None:
            own = self._by_tenant[tenant] = _Evicting(
                self.tenant_max, partial(self._evicted_by_tenant, tenant), self._weigh
            )
        own[key] = value  # first: a tenant over its share evicts its own entries, nobody else's
        self._all[(tenant, key)] = value  # then the least recently used of all, if needed
        return True

    def pop(self, tenant: str, key: Hashable) -> V | None:
        value = self._all.pop((tenant, key), None)
        own = self._by_tenant.get(tenant)
        if own is not None:
            own.pop(key, None)
            if not own:
                del self._by_tenant[tenant]
        return value

    def _evicted_by_tenant(self, tenant: str, key: Hashable) -> None:
        self._all.pop((tenant, key), None)

    def _evicted_globally(self, slot: tuple[str, Hashable]) -> None:
        tenant, key = slot
        own = self._by_tenant.get(tenant)
        if own is not None:
            own.pop(key, None)
            if not own:
                del self._by_tenant[tenant]
