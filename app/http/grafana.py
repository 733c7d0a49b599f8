"""Grafana JSON datasource: the metric catalogue and how a target becomes a series or a table.

Daily measures are time series, one per field a measure declares (app/measures.GrafanaSeries),
with one point per local midnight (epoch ms), filled across the requested range (0 for counts, a
null gap for rates and percentiles on days without runs); counts by status and recent runs are
tables. Every target goes through the
same service (and so the same cache and day rollups) as the native API.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

import msgspec

from app.config import ApiKey, Settings
from app.core.app_directory import history_days
from app.core.days import local_midnight_us, touched_days
from app.core.measures import DAILY_MEASURES, DailyMeasure, GrafanaSeries
from app.core.service import StatsService
from app.http.params import (
    BadParameter,
    check_range,
    choice_param,
    instant_param,
    trigger_param,
    uuid_param,
    zone_param,
)
from schemas.grafana import (
    Column,
    Filter,
    MetricInfo,
    Option,
    PayloadConfig,
    QueryRequest,
    Table,
    Target,
    TimeSeries,
)
from schemas.requests import (
    STATUSES,
    TRIGGER_SOURCES,
    CountRequest,
    DailyRequest,
    RunListRequest,
    RunStatus,
    TriggerSource,
)

SERIES: dict[str, tuple[DailyMeasure, GrafanaSeries]] = {
    series.metric: (measure, series) for measure in DAILY_MEASURES for series in measure.series
}
TABLES = {"runs_by_status": "Runs by status", "recent_runs": "Recent runs (newest 50)"}
COMMON_ZONES = (
    "UTC",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
)
FILTER_KEYS = {"triggered_from": TRIGGER_SOURCES, "status": STATUSES}
REGEX_ESCAPE = re.compile(r"\\([\\^$*+?.()|\[\]{}/])")  # one character after a backslash: linear
MAX_PAYLOAD_VALUE = 200  # characters; a zone name is at most 64, an id 36
MAX_TARGETS = 20  # per /query; a dashboard panel sends a handful


def payload_value(payload: dict[str, Any], name: str, default: str = "") -> str:
    """One payload value, with Grafana's regex escaping undone.

    The plugin interpolates dashboard variables in builder payloads with Grafana's `regex` format,
    so `$timezone` arrives as `America\\/New_York` and a multi-value `$app` as `(id1|id2)`. No
    valid app id, trigger or zone holds a backslash, so no valid value is changed by this.
    """
    value = payload.get(name)
    if value is None or value == "":  # not chosen (a cleared select sends "")
        value = default
    if isinstance(value, str) and len(value) > MAX_PAYLOAD_VALUE:
        raise BadParameter(name, f"is longer than {MAX_PAYLOAD_VALUE} characters")
    if isinstance(value, str) and value.startswith("(") and value.endswith(")") and "|" in value:
        value = value[1:-1].split("|")  # (id1|id2): found without a regex, so in linear time
    if isinstance(value, list):  # a multi-value dashboard variable
        if len(value) != 1:
            raise BadParameter(name, "choose exactly one value per query")
        value = value[0]
    if not isinstance(value, str):
        raise BadParameter(name, f"must be a text, not {_json_type(value)}")
    if len(value) > MAX_PAYLOAD_VALUE:
        raise BadParameter(name, f"must be a text of at most {MAX_PAYLOAD_VALUE} characters")
    return REGEX_ESCAPE.sub(r"\1", value)


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(value), "a value")


def metric_catalogue() -> list[MetricInfo]:
    payloads = [
        PayloadConfig(name="app_id", label="App", placeholder="choose an app", width=40),
        PayloadConfig(
            name="triggered_from",
            label="Trigger source",
            options=[Option(value=value) for value in TRIGGER_SOURCES],
            placeholder="app-run",
        ),
        PayloadConfig(name="timezone", label="Time zone", placeholder="UTC", width=20),
    ]
    names = {**{name: series.label for name, (_, series) in SERIES.items()}, **TABLES}
    return [MetricInfo(value=name, label=label, payloads=payloads) for name, label in names.items()]


def payload_options(name: str, apps: list[tuple[str, str, int]]) -> list[Option]:
    if name == "app_id":
        return [
            Option(value=app, label=f"{app} ({runs} runs, tenant {tenant[:8]})") for tenant, app, runs in apps
        ]
    if name == "triggered_from":
        return [Option(value=value) for value in TRIGGER_SOURCES]
    if name == "timezone":
        return [Option(value=value) for value in COMMON_ZONES]
    return []


def visible_apps(apps: list[tuple[str, str, int]], key: ApiKey | None) -> list[tuple[str, str, int]]:
    return [app for app in apps if key is None or key.tenants is None or app[0] in key.tenants]


class AdHocFilters(msgspec.Struct, frozen=True):
    triggered_from: TriggerSource | None = None
    status: RunStatus | None = None


class GrafanaQuery:
    """One /query request: the range, the ad-hoc filters and the apps the caller may read."""

    def __init__(
        self,
        service: StatsService,
        settings: Settings,
        request: QueryRequest,
    ) -> None:
        """Checks the range, filters and targets: a bad query costs no backend statement."""
        self.service = service
        self.settings = settings
        self.start_us = instant_param("range.from", request.range.from_, "UTC")
        self.end_us = instant_param("range.to", request.range.to, "UTC")
        check_range(self.start_us, self.end_us, settings.max_range_days, "UTC", "range.from", "range.to")
        self.filters = self._filters([*(request.filters or []), *(request.adhoc_filters or [])])
        self.targets = [target for target in request.targets if not target.hide]
        if len(self.targets) > MAX_TARGETS:
            raise BadParameter("targets", f"at most {MAX_TARGETS} visible targets per query")
        self.tenants: dict[str, str] = {}

    @staticmethod
    def _filters(filters: list[Filter]) -> AdHocFilters:
        """Grafana ANDs its ad-hoc filters: two on one key with different values match no run,
        which is far likelier a mistake than a question, so that is a 400 naming the key (the
        same filter twice, as in `filters` and `adhocFilters` both, is one filter)."""
        chosen: dict[str, str] = {}
        for item in filters:
            if item.key not in FILTER_KEYS:
                raise BadParameter("filters", f"unknown key {item.key!r}; use triggered_from or status")
            if item.operator != "=":
                raise BadParameter("filters", f"only '=' is supported, not {item.operator!r}")
            value = choice_param(item.key, item.value, FILTER_KEYS[item.key])
            if chosen.setdefault(item.key, value) != value:
                raise BadParameter(
                    "filters",
                    f"two filters on {item.key!r} ({chosen[item.key]!r} and {value!r}) match no run "
                    "(ad-hoc filters all apply); keep one filter per key",
                )
        return msgspec.convert(chosen, AdHocFilters)

    async def answer(self, apps: list[tuple[str, str, int]]) -> list[TimeSeries | Table]:
        """Every visible target, for the apps (tenant, app, runs) the caller may read."""
        self.tenants = {app: tenant for tenant, app, _ in apps}
        return list(await asyncio.gather(*(self._target(target) for target in self.targets)))

    async def _target(self, target: Target) -> TimeSeries | Table:
        payload = target.payload or {}
        app_id = uuid_param("app_id", payload_value(payload, "app_id"))
        tenant_id = self.tenants.get(app_id)
        if tenant_id is None:
            raise BadParameter(
                "app_id",
                f"is not an app of this key's tenants with runs in the last {history_days(self.settings)} "
                "days (Grafana's app list looks back STATS_MAX_RANGE_DAYS, or ALIYUN_SLS_LOGSTORE_TTL "
                "days when longer)",
            )
        trigger = self.filters.triggered_from or trigger_param(
            "triggered_from", payload_value(payload, "triggered_from", "app-run")
        )
        zone = zone_param("timezone", payload_value(payload, "timezone", "UTC"))
        if target.target in SERIES:
            measure, series = SERIES[target.target]
            return await self._series(measure, series, tenant_id, app_id, trigger, zone)
        if target.target == "runs_by_status":
            return await self._status_table(tenant_id, app_id, trigger)
        if target.target == "recent_runs":
            return await self._recent_runs(tenant_id, app_id, trigger)
        raise BadParameter("target", f"unknown metric {target.target!r}")

    async def _series(
        self,
        measure: DailyMeasure,
        series: GrafanaSeries,
        tenant_id: str,
        app_id: str,
        trigger: TriggerSource,
        zone: str,
    ) -> TimeSeries:
        request = DailyRequest(
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=trigger,
            timezone=zone,
            start_us=self.start_us,
            end_us=self.end_us,
            status=self.filters.status,
        )
        data, _ = await self.service.daily(measure, request)
        values = {item.date: getattr(item, series.field) for item in data}
        points = []
        for day, midnight_ms in self._days(zone):
            value = values.get(day.isoformat(), series.empty)
            points.append((None if value is None else float(value), midnight_ms))
        return TimeSeries(target=series.metric, datapoints=points)

    def _days(self, zone: str) -> list[tuple[date, int]]:
        """Every local day the range touches, with the epoch ms of its midnight."""
        days = touched_days(zone, self.start_us, self.end_us)
        return [(day, local_midnight_us(day, zone) // 1000) for day in days]

    async def _status_table(self, tenant_id: str, app_id: str, trigger: TriggerSource) -> Table:
        status = self.filters.status
        counts, _ = await self.service.counts(
            CountRequest(
                tenant_id=tenant_id,
                app_id=app_id,
                triggered_from=trigger,
                status=status,
                start_us=self.start_us,
                end_us=self.end_us,
            )
        )
        by_status = {
            "running": counts.running,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "stopped": counts.stopped,
            "partial-succeeded": counts.partial_succeeded,
        }
        by_status["paused"] = counts.total - sum(by_status.values())
        rows: list[list[Any]] = [[name, count] for name, count in by_status.items() if status in (None, name)]
        return Table(columns=[Column("status", "string"), Column("runs", "number")], rows=rows)

    async def _recent_runs(self, tenant_id: str, app_id: str, trigger: TriggerSource) -> Table:
        page, _ = await self.service.run_page(
            RunListRequest(
                tenant_id=tenant_id,
                app_id=app_id,
                triggered_from=trigger,
                status=self.filters.status,
                limit=50,
                last_id=None,
            )
        )
        columns = [
            Column("created_at", "time"),
            Column("id", "string"),
            Column("status", "string"),
            Column("elapsed_time", "number"),
            Column("total_tokens", "number"),
            Column("created_by", "string"),
        ]
        rows: list[list[Any]] = [
            [run.created_at * 1000, run.id, run.status, run.elapsed_time, run.total_tokens, run.created_by]
            for run in page.data
        ]
        return Table(columns=columns, rows=rows)
