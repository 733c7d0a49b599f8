"""Validated, normalized requests: what the cache keys on and what the repository answers."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

TriggerSource = Literal[
    "debugging", "app-run", "rag-pipeline-run", "rag-pipeline-debugging", "webhook", "schedule", "plugin"
]
RunStatus = Literal["running", "succeeded", "failed", "stopped", "partial-succeeded", "paused"]
TRIGGER_SOURCES: tuple[str, ...] = get_args(TriggerSource)
STATUSES: tuple[str, ...] = get_args(RunStatus)


class DailyRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: TriggerSource
    timezone: str
    start_us: int | None
    end_us: int | None
    status: RunStatus | None = None  # only runs whose latest status this is (Grafana's ad-hoc filter)


class CountRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: TriggerSource
    status: RunStatus | None
    time_range_s: int | None = None  # created within this many seconds before now
    start_us: int | None = None  # or an absolute created range (Grafana)
    end_us: int | None = None


class RunListRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: TriggerSource
    status: RunStatus | None
    limit: int
    last_id: str | None


class RunDetailRequest(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    run_id: str
