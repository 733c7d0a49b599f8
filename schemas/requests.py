"""Validated, normalized requests: what the cache keys on and what the repository answers."""

from __future__ import annotations

from typing import Literal

import msgspec

DailyMeasure = Literal["daily_runs", "daily_terminals", "daily_token_costs", "daily_interactions"]


class DailyRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: str
    timezone: str
    start_us: int | None
    end_us: int | None


class CountRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: str
    status: str | None
    time_range_s: int | None = None  # created within this many seconds before now
    start_us: int | None = None  # or an absolute created range (Grafana)
    end_us: int | None = None


class RunListRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: str
    status: str | None
    limit: int
    last_id: str | None


class RunDetailRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    run_id: str
