"""Settled days read once: the first view of a range, and a day of a dashboard's refreshes.

- First view: a fresh service (nothing kept) answers `now-Nd..now` (Grafana's range, neither
  edge at midnight) for N = 1, 7, 30, 90, once per daily measure, through the service in
  process; its wall time against the floor, a bare scan of the rows the range involves
  (`bench/run.scan_floor`). The statements it sent are listed with their time, to say where
  what remains goes.
- A day of refreshes: a 90-day dashboard (every daily measure), once open, refreshed every 30 s
  for 24 h of wall clock (stepped, not slept), while the app keeps running: a day's worth of new
  runs is written as the clock passes their write times. Per hour: statements and rows back, split into
  the live days' refreshes (kept runs of live days) and everything else (settled reads,
  validations, edges); the goal is everything <= 1.1x the live refreshes alone.
The new runs are removed again afterwards, so other parts see the dataset as loaded.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import psycopg

from app.config import load_settings
from app.core.measures import DAILY_MEASURES
from app.core.service import StatsService
from app.demo import COLUMNS, copy_rows, demo_apps, generate_rows
from app.stores.repository import StatsRepository
from app.stores.sources import build_sources
from bench.refresh import RecordingBackend, SentStatement, SteppedClock
from queries.scope import RunScope
from schemas.requests import DailyRequest

US = 1_000_000
DAY_S = 86_400
RANGES_DAYS = (1, 7, 30, 90)
WALL_CLOCK_OFFSET_S = 6 * 3600 + 17 * 60 + 23  # neither edge of now-Nd..now at a midnight
STEP_S = 30  # Grafana's refresh
SIMULATED_S = DAY_S
NEW_RUNS_PER_DAY = 11_000  # the 1 m dataset's rate (1 M runs over 90 days)
_TIME = COLUMNS.index("__time__")


def kind(sent: SentStatement) -> str:
    """What a statement was for: a live days' refresh or whole read, an edge's read, a
    validation, or a read of days."""
    sql = sent.query.sql
    if "latest_key" in sql:
        return "live" if "end_us" not in sent.query.params else "edge"
    if "AS changed" in sql:
        return "validation"
    return "days"


def _service(url: str, clock: SteppedClock) -> tuple[StatsService, RecordingBackend]:
    settings = load_settings({"STATS_DATABASE_URL": url})
    backend = RecordingBackend(url, settings)
    repository = StatsRepository(build_sources(settings, backend, None), settings, wall_clock=clock)
    return StatsService(repository, settings, wall_clock=clock, cache_clock=clock), backend


def _request(now_s: float, days: int, measure_zone: str = "UTC") -> DailyRequest:
    app = demo_apps()[0]  # the busiest app
    end_us = int(now_s * US)
    return DailyRequest(
        tenant_id=app.tenant_id, app_id=app.app_id, triggered_from="app-run", timezone=measure_zone,
        start_us=end_us - days * DAY_S * US, end_us=end_us,
    )  # fmt: skip


def _floor_ms(url: str, request: DailyRequest) -> float:
    """A bare scan of the rows a range involves: every version written since its start less the
    slack (its runs' versions may be written any time after), no grouping, no parsing."""
    from bench.run import connect, scan_floor, timed

    assert request.start_us is not None
    scope = RunScope(
        tenant_id=request.tenant_id,
        app_id=request.app_id,
        triggered_from=request.triggered_from,
        start_us=request.start_us,
    )
    with connect(url) as conn:
        return timed(conn, scan_floor(scope))


async def first_view(url: str, now_s: int, days: int) -> dict[str, Any]:
    """Each measure's first answer of now-{days}d..now from a fresh service."""
    results: list[dict[str, Any]] = []
    for measure in DAILY_MEASURES:
        clock = SteppedClock(now_s + WALL_CLOCK_OFFSET_S)
        service, backend = _service(url, clock)
        await backend.open()
        try:
            started = time.perf_counter()
            await service.daily(measure, _request(clock(), days))
            ms = (time.perf_counter() - started) * 1000
        finally:
            await backend.close()
        results.append(
            {
                "measure": measure.name,
                "ms": round(ms, 1),
                "statements": [
                    {"kind": kind(sent), "ms": round(sent.ms, 1), "rows_back": sent.rows}
                    for sent in backend.sent
                ],
            }
        )
    floor = _floor_ms(url, _request(now_s + WALL_CLOCK_OFFSET_S, days))
    return {
        "days": days,
        "floor_ms": round(floor, 1),
        "measures": [{**one, "over_floor": round(one["ms"] / floor, 2)} for one in results],
    }


def _new_runs(now_s: int) -> list[tuple[Any, ...]]:
    """New runs of every demo app at the dataset's rate, created over the two days from its now
    (the simulated day starts 6 h into the first), by write time. Another seed makes other run
    ids; the rows are moved onto the dataset's apps."""
    days = 2
    end = datetime.fromtimestamp(now_s + days * DAY_S, UTC)
    ours = {(new.tenant_id, new.app_id): app for new, app in zip(demo_apps(99), demo_apps(), strict=True)}
    tenant, app, workflow = (COLUMNS.index(name) for name in ("tenant_id", "app_id", "workflow_id"))
    rows = []
    for row in generate_rows(NEW_RUNS_PER_DAY * days, days=days, seed=99, now=end):
        mapped = list(row)
        target = ours[(row[tenant], row[app])]
        mapped[tenant], mapped[app], mapped[workflow] = target.tenant_id, target.app_id, target.workflow_id
        rows.append(tuple(mapped))
    return sorted(rows, key=lambda row: row[_TIME])


async def day_of_refreshes(url: str, now_s: int) -> dict[str, Any]:
    """24 h of 30 s refreshes of a 90-day dashboard while new runs arrive."""
    clock = SteppedClock(now_s + WALL_CLOCK_OFFSET_S)
    service, backend = _service(url, clock)
    new_rows = _new_runs(now_s)
    written = 0
    per_hour: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    await backend.open()
    try:
        for measure in DAILY_MEASURES:  # the dashboard opens (its first view is measured above)
            await service.daily(measure, _request(clock(), 90))
        clock.now_s += STEP_S
        started_s = clock()
        with psycopg.connect(url, autocommit=True) as writer:
            while clock() < started_s + SIMULATED_S:
                due = written
                while due < len(new_rows) and new_rows[due][_TIME] <= clock():
                    due += 1
                if due > written:
                    copy_rows(writer, new_rows[written:due])
                    written = due
                backend.sent.clear()
                for measure in DAILY_MEASURES:
                    await service.daily(measure, _request(clock(), 90))
                hour = int((clock() - started_s) // 3600)
                for sent in backend.sent:
                    figures = per_hour[hour][kind(sent)]
                    figures[0] += 1
                    figures[1] += sent.rows
                    figures[2] += round(sent.ms * 1000)
                clock.now_s += STEP_S
            writer.execute(
                "DELETE FROM workflow_execution WHERE __time__ >= %s AND id = ANY(%s)",
                (now_s - 3600, list({row[COLUMNS.index("id")] for row in new_rows})),
            )
    finally:
        await backend.close()
    hours: list[dict[str, Any]] = []
    totals = [0, 0]  # statements, rows back: everything
    live_totals = [0, 0]  # of the live days' refreshes
    for hour in sorted(per_hour):
        kinds = per_hour[hour]
        live = kinds.get("live", [0, 0, 0])
        every = [sum(figures[i] for figures in kinds.values()) for i in range(3)]
        totals = [totals[0] + every[0], totals[1] + every[1]]
        live_totals = [live_totals[0] + live[0], live_totals[1] + live[1]]
        by_kind = {
            name: {"statements": f[0], "rows_back": f[1], "ms": round(f[2] / 1000, 1)}
            for name, f in kinds.items()
        }
        hours.append(
            {
                "hour": hour,
                "by_kind": by_kind,
                "statements_over_live": round(every[0] / max(1, live[0]), 3),
                "rows_over_live": round(every[1] / max(1, live[1]), 3),
                "ms_over_live": round(every[2] / max(1, live[2]), 3),
            }
        )
    ratios = {
        name: [float(hour[name]) for hour in hours] for name in ("statements_over_live", "rows_over_live")
    }
    return {
        "refresh_every_s": STEP_S,
        "hours": len(hours),
        "new_runs": NEW_RUNS_PER_DAY,
        "per_hour": hours,
        "worst_statements_over_live": max(ratios["statements_over_live"]),
        "worst_rows_over_live": max(ratios["rows_over_live"]),
        "day_statements_over_live": round(totals[0] / max(1, live_totals[0]), 3),
        "day_rows_over_live": round(totals[1] / max(1, live_totals[1]), 3),
    }


def measure(url: str, now_s: int) -> dict[str, Any]:
    return {
        "first_view": [asyncio.run(first_view(url, now_s, days)) for days in RANGES_DAYS],
        "day_of_refreshes": asyncio.run(day_of_refreshes(url, now_s)),
    }


def markdown_lines(figures: dict[str, Any]) -> list[str]:
    lines = [
        "## Settled days read once (1m, SLS-like, through the service in process)",
        "",
        "First view: a fresh service answers `now-Nd..now` (neither edge at midnight) once per daily "
        "measure; its wall time against the floor, a bare scan of the versions the range involves "
        "(every version written since its start less the slack). Where the time goes: the "
        "statements it sent (`days`: settled days and the first edge day; `live`: the live days' runs).",
        "",
        "| range | floor ms | measure | first view ms | ours / floor | statements (kind ms rows) |",
        "|---|---|---|---|---|---|",
    ]
    for view in figures["first_view"]:
        for one in view["measures"]:
            sent = ", ".join(f"{s['kind']} {s['ms']} ({s['rows_back']})" for s in one["statements"])
            lines.append(
                f"| {view['days']} d | {view['floor_ms']} | {one['measure']} | {one['ms']} "
                f"| {one['over_floor']}x | {sent} |"
            )
    day = figures["day_of_refreshes"]
    lines += [
        "",
        f"A day of refreshes: a 90-day dashboard of every daily measure, once open, refreshed every "
        f"{day['refresh_every_s']} s for {day['hours']} h of stepped wall clock while new runs arrive "
        f"({day['new_runs']:,} a day). Per hour, everything it sent over the live days' refreshes "
        "alone (goal <= 1.1):",
        "",
        "| | statements | rows back |",
        "|---|---|---|",
        f"| the whole day | {day['day_statements_over_live']}x | {day['day_rows_over_live']}x |",
        f"| the worst hour | {day['worst_statements_over_live']}x | {day['worst_rows_over_live']}x |",
    ]
    before = figures.get("before")
    if before is not None:
        lines += [
            f"| before ({before['commit']}), the whole day | {before['day_statements_over_live']}x "
            f"| {before['day_rows_over_live']}x |",
            f"| before, the worst hour | {before['worst_statements_over_live']}x "
            f"| {before['worst_rows_over_live']}x |",
        ]
    return lines
