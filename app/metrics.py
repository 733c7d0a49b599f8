"""Prometheus metrics (prometheus-client) and the per-request figures the log line reports.

One registry per application, so several apps in one process (tests) never collide. The
backend adds its query time to the current request's `RequestFigures` (a context variable), and
the middleware reads it with the X-Cache result when the response starts.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RequestFigures(msgspec.Struct):
    backend_ms: float = 0.0
    backend_queries: int = 0  # statements started, counted against STATS_MAX_QUERIES_PER_REQUEST
    client_gone: bool = False  # the client disconnected before the answer was complete


current_figures: contextvars.ContextVar[RequestFigures | None] = contextvars.ContextVar(
    "figures", default=None
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dify_stats_requests", "HTTP requests answered", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "dify_stats_request_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.cache = Counter(
            "dify_stats_cache_results", "Answers by cache result (hit, miss, stale, partial)", ["result"],
            registry=self.registry,
        )  # fmt: skip
        self.backend = Histogram(
            "dify_stats_backend_query_seconds", "Backend query time", ["source", "plan"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.skipped_runs = Counter(
            "dify_stats_skipped_runs", "Runs left out of an answer because their created time does not "
            "parse", ["source"], registry=self.registry,
        )  # fmt: skip
        self.backend_errors = Counter(
            "dify_stats_backend_errors", "Backend statements that failed, by kind "
            "(unavailable, quota, bad_sql, bad_data, other)", ["source", "kind"], registry=self.registry,
        )  # fmt: skip

        # Replicas sharing one Redis (app/fleet/link.py): reported only with STATS_REDIS_URL.
        self.redis_errors = Counter(
            "dify_stats_redis_errors",
            "Calls to Redis that failed, by error",
            ["kind"],
            registry=self.registry,
        )
        self.fleet_slots = Gauge(
            "dify_stats_fleet_slots_in_use", "Statements running fleet-wide against a source, read "
            "from the shared budget at each scrape (NaN while Redis does not answer)", ["source"],
            registry=self.registry,
        )  # fmt: skip
        self.budget_local = Gauge(
            "dify_stats_budget_local", "1 while this replica's statements against a source take a "
            "local share of the budget (Redis down, or its budget script failing), else 0", ["source"],
            registry=self.registry,
        )  # fmt: skip
        # Read just before each scrape, so that gauges of shared state say how it is now.
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []
        self.replicas_seen = Gauge(
            "dify_stats_replicas_seen", "Replicas alive, as the shared heartbeat says", registry=self.registry
        )
        self.shared_cache = Counter(
            "dify_stats_shared_cache", "Shared (Redis) cache lookups by result (hit, miss, unreadable)",
            ["result"], registry=self.registry,
        )  # fmt: skip

    async def scrape(self) -> bytes:
        """The metrics in Prometheus's text format, shared gauges read first (each bounded by its
        own call timeout)."""
        for refresh in self.before_scrape:
            await refresh()
        return generate_latest(self.registry)

    def watch_kept_runs(self, runs: Callable[[], float]) -> None:
        """Runs kept in memory for live days and range edges, against STATS_LIVE_RUNS_MAX."""
        gauge = Gauge("dify_stats_kept_runs", "Runs kept in memory for live days", registry=self.registry)
        gauge.set_function(runs)

    def watch_pools(self, pools: dict[str, AsyncConnectionPool[Any]]) -> None:
        """Pool gauges labelled by source (`logstore`, `workflow_runs`)."""
        self.registry.register(_PoolCollector(pools))


class _PoolCollector(Collector):
    """psycopg_pool's own statistics: size, idle connections, waiting requests, time waited."""

    def __init__(self, pools: dict[str, AsyncConnectionPool[Any]]) -> None:
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        stats = {source: pool.get_stats() for source, pool in self.pools.items()}
        for name, key, text in (
            ("dify_stats_pool_size", "pool_size", "Connections open or being opened"),
            ("dify_stats_pool_available", "pool_available", "Idle connections"),
            ("dify_stats_pool_requests_waiting", "requests_waiting", "Requests waiting for a connection"),
            ("dify_stats_pool_requests_wait_ms", "requests_wait_ms", "Total time requests waited (ms)"),
            ("dify_stats_pool_requests_queued", "requests_queued", "Requests that had to wait"),
        ):
            family = GaugeMetricFamily(name, text, labels=["source"])
            for source, values in stats.items():
                family.add_metric([source], values.get(key, 0))
            yield family
