"""What `serve` checks before it listens, and the one line saying what runs once it does."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import structlog

from app import __version__
from app.config import ConfigError, Settings, redact_url
from app.fleet import Fleet
from app.stores.budget import Budget, LocalBudget, store_identity
from app.stores.node_logstore import NodeLogstore, probe_url
from app.stores.readiness import SourceProblem, wait_for_sources

log = structlog.get_logger("dify_stats.startup")


def source_urls(settings: Settings, logstore_url: str | None) -> dict[str, str]:
    """Source name -> URL, as `serve` will read them (the embedded server's URL included)."""
    urls: dict[str, str] = {}
    if logstore_url:
        urls["logstore"] = logstore_url
    dify_url = settings.dify_database_url or (logstore_url if settings.two_sources else None)
    if dify_url:
        urls["workflow_runs"] = dify_url
    return urls


def check_sources(settings: Settings, urls: dict[str, str], wait: float) -> None:
    """Every source reachable, with its table and columns, within `wait` seconds; else a
    ConfigError whose one line names the source (password hidden) and the problem. With Redis,
    the checks hold slots of the fleet's budget like every other statement."""

    async def checked() -> None:
        fleet = Fleet(settings)

        def budget_of(source: str, url: str) -> Budget:
            return fleet.budget(
                store_identity(url, source), LocalBudget(settings.pool_size, settings.tenant_share)
            )

        try:
            timeout = min(settings.query_timeout, 10.0)
            await wait_for_sources(urls, wait, timeout, settings.dialect, budget_of)
        finally:
            await fleet.close()

    try:
        asyncio.run(checked())
    except SourceProblem as problem:
        raise ConfigError(str(problem)) from None


def started_line(settings: Settings, urls: dict[str, str], address: str) -> dict[str, Any]:
    """The fields of the start-up log line; URLs with their passwords hidden."""
    sources = [
        {
            "name": name,
            "url": redact_url(url),
            "dialect": settings.dialect if name == "logstore" else "postgres",
            "plan": settings.query_plan if name == "logstore" else "table",
        }
        for name, url in urls.items()
    ]
    if settings.logstore_since is not None:
        sources[0]["from"] = settings.logstore_since.isoformat()
    console = settings.dify_console_api_url
    return {
        "version": __version__,
        "address": address,
        "sources": sources,
        "embedded": settings.embedded,
        "auth": f"api keys ({len(settings.api_keys)})" if settings.auth else "off",
        "cache": {
            "max_entries": settings.cache_max_entries,
            "ttl": settings.cache_ttl,
            "settled_ttl": settings.settled_ttl,
            "stale_max": settings.stale_max,
        },
        "console_drop_in": f"on ({redact_url(console)})" if console else "off (DIFY_CONSOLE_API_URL not set)",
        "max_connections": settings.max_connections,
        "redis": Fleet.describe(settings),
    }


def announce(fields: dict[str, Any]) -> None:
    log.info("service_started", **fields)


def check_node_logstore(settings: Settings, logstore_url: str | None) -> NodeLogstore | None:
    """What the node LogStore is (None without a LogStore): optional, so a missing one is reported
    (start-up line, /readyz) instead of stopping the service. A probe that cannot tell (the store
    did not answer) leaves it present: a node statement that finds it missing says so later."""
    if not logstore_url:
        return None
    try:
        problem = asyncio.run(probe_url(logstore_url, min(settings.query_timeout, 10.0), settings.dialect))
    except (psycopg.Error, OSError) as error:
        log.warning("node_logstore_not_probed", error_type=type(error).__name__)
        problem = None
    return NodeLogstore(problem)
