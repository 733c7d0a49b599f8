"""The service as the benchmark times it uncached: no answer cache, day rollups nor kept runs,
so each request sends the very statements its question needs."""

from __future__ import annotations

from app.config import Settings, load_settings
from app.demo import DemoApp


def uncached_settings(url: str) -> Settings:
    return load_settings(
        {
            "STATS_DATABASE_URL": url,
            "STATS_CACHE_TTL": "0",
            "STATS_SETTLED_TTL": "0",
            "STATS_LIVE_RUNS_MAX": "0",
        }
    )


def daily_runs_path(app: DemoApp) -> str:
    return f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs"
