"""The daily measures, each declared once.

Everything that differs between measures is here: where it is served (native path, Dify console
path when Dify has one, Grafana series), what its answer's point holds, the SQL aggregates every
plan and source wraps (queries/daily.py), and how a day's row becomes the point. Routes, the
Grafana catalogue, the repository, the kept runs, `check-sls`, the CLI and the tests iterate
`DAILY_MEASURES`; nothing else names a measure.

Aggregates are named after what they count, so rows convert by name (queries/rows.DailyRow):
`runs` (runs created that day), `users` (distinct `created_by`), `tokens` (sum of each run's
latest `total_tokens`), one count per status of the runs' latest versions, and the durations of
the finished ones (count, nearest-rank percentiles and maximum, in µs). Over one row per run,
runs are `count(*)`; over every version (the SLS shortcut) they are `count(DISTINCT id)`. Each
day's value stands alone, so days roll up; what is not a sum across two sources is united on the
day holding the boundary between them: distinct users (`counts_users`), and the durations ranked
(`sql.ranks`). The Python twins of the per-day aggregates (`status_tallies`, `duration_tallies`)
serve the runs kept for live days and that boundary day, and sit beside the SQL they mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import msgspec

from queries.daily import DailyAggregates, nearest_rank_sql
from queries.rows import DailyRow
from schemas.requests import STATUSES
from schemas.statistics import (
    DailyDuration,
    DailyInteractions,
    DailyRuns,
    DailyStatus,
    DailyTerminals,
    DailyTokenCosts,
)

_HUNDREDTH = Decimal("0.01")
_TEN_THOUSANDTH = Decimal("0.0001")


def interactions(runs: int, users: int) -> float:
    """runs / distinct users, rounded to 2 decimals half-even: exactly Dify's average of per-user
    run counts, computed on integers so no float rounding creeps in."""
    return float((Decimal(int(runs)) / Decimal(int(users))).quantize(_HUNDREDTH, rounding=ROUND_HALF_EVEN))


class GrafanaSeries(msgspec.Struct, frozen=True):
    """One Grafana time series of a measure: a field of its points, one datapoint per local day.

    `empty`: the value of a day without runs (the series is filled across the range): 0 for a
    count, None (a gap) for what has no value without runs (a rate, a percentile)."""

    metric: str
    label: str
    field: str
    empty: float | None = 0.0


class DailyMeasure(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # the cache's and the logs' name
    native_path: str  # under /v1/tenants/{tenant_id}/apps/{app_id}/statistics
    console_path: str | None  # under Dify's /console/api/apps/{app_id}/workflow/statistics, if Dify has it
    summary: str
    point_type: type[Any]  # the answer's struct for one day: `date` and the measure's fields
    sql: DailyAggregates
    values: Callable[[DailyRow], dict[str, Any]]  # a day's row as the point's fields
    series: tuple[GrafanaSeries, ...]
    counts_users: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        """The point's fields besides `date`, in answer order."""
        return tuple(name for name in self.point_type.__struct_fields__ if name != "date")

    def point(self, day: str, row: DailyRow) -> Any:
        return self.point_type(date=day, **self.values(row))


DAILY_RUNS = DailyMeasure(
    name="daily_runs",
    native_path="/daily-runs",
    console_path="/daily-conversations",
    summary="Runs per local day (every status)",
    point_type=DailyRuns,
    sql=DailyAggregates(over_runs="count(*) AS runs", over_versions="count(DISTINCT id) AS runs"),
    values=lambda row: {"runs": int(row.runs)},
    series=(GrafanaSeries("daily_runs", "Daily runs", "runs"),),
)
DAILY_TERMINALS = DailyMeasure(
    name="daily_terminals",
    native_path="/daily-terminals",
    console_path="/daily-terminals",
    summary="Distinct users per day",
    point_type=DailyTerminals,
    sql=DailyAggregates(
        over_runs="count(DISTINCT created_by) AS users", over_versions="count(DISTINCT created_by) AS users"
    ),
    values=lambda row: {"terminal_count": int(row.users)},
    series=(GrafanaSeries("daily_terminals", "Daily terminals (distinct users)", "terminal_count"),),
    counts_users=True,
)
DAILY_TOKEN_COSTS = DailyMeasure(
    name="daily_token_costs",
    native_path="/token-costs",
    console_path="/token-costs",
    summary="Tokens of the runs of each day",
    point_type=DailyTokenCosts,
    sql=DailyAggregates(over_runs="sum(total_tokens) AS tokens", reads=("total_tokens",)),
    values=lambda row: {"token_count": int(row.tokens or 0)},
    series=(GrafanaSeries("token_costs", "Daily token costs", "token_count"),),
)
DAILY_INTERACTIONS = DailyMeasure(
    name="daily_interactions",
    native_path="/average-interactions",
    console_path="/average-app-interactions",
    summary="Runs per user per day (2 decimals, half-even)",
    point_type=DailyInteractions,
    sql=DailyAggregates(
        over_runs="count(*) AS runs, count(DISTINCT created_by) AS users",
        over_versions="count(DISTINCT id) AS runs, count(DISTINCT created_by) AS users",
    ),
    values=lambda row: {"interactions": interactions(row.runs, row.users)},
    series=(GrafanaSeries("average_interactions", "Average interactions per user", "interactions"),),
    counts_users=True,
)

# --- Runs by the status of their latest version ----------------------------------------------
FINISHED_STATUSES = ("succeeded", "failed", "stopped", "partial-succeeded")
# Every status a run may have, finished ones first, named as fields (partial-succeeded -> _).
STATUS_FIELDS = {status: status.replace("-", "_") for status in (*FINISHED_STATUSES, "running", "paused")}
assert set(STATUS_FIELDS) == set(STATUSES)


def status_tallies(runs_by_status: Mapping[str, int]) -> dict[str, Any]:
    """The row's status counts from runs counted by status (the SQL's `count(CASE ...)` each)."""
    return {field: int(runs_by_status.get(status, 0)) for status, field in STATUS_FIELDS.items()}


def failure_rate(row: DailyRow) -> float | None:
    """failed / finished runs, 4 decimals half-even on integers; None without finished runs."""
    finished = sum(int(getattr(row, STATUS_FIELDS[status]) or 0) for status in FINISHED_STATUSES)
    if not finished:
        return None
    rate = Decimal(int(row.failed or 0)) / Decimal(finished)
    return float(rate.quantize(_TEN_THOUSANDTH, rounding=ROUND_HALF_EVEN))


DAILY_STATUS = DailyMeasure(
    name="daily_status",
    native_path="/daily-status",
    console_path=None,
    summary="Runs per local day by the status of their latest version, and the failure rate",
    point_type=DailyStatus,
    sql=DailyAggregates(
        over_runs=", ".join(
            f"count(CASE WHEN status = '{status}' THEN 1 END) AS {field}"
            for status, field in STATUS_FIELDS.items()
        ),
        reads=("status",),
    ),
    values=lambda row: {
        **{field: int(getattr(row, field) or 0) for field in STATUS_FIELDS.values()},
        "failure_rate": failure_rate(row),
    },
    series=(
        *(
            GrafanaSeries(f"runs_{field}", f"Runs {status} per day", field)
            for status, field in STATUS_FIELDS.items()
        ),
        GrafanaSeries("failure_rate", "Failure rate (failed / finished runs)", "failure_rate", empty=None),
    ),
)

# --- Durations of finished runs ---------------------------------------------------------------
DURATION_PERCENTS = (50, 95, 99)


def nearest_rank(ordered: Sequence[int], percent: int) -> int | None:
    """The value at position ceil(percent/100 * n) of `ordered` (ascending), as the SQL's
    `nearest_rank_sql`, in the same integer arithmetic; None when empty."""
    if not ordered:
        return None
    return ordered[(percent * len(ordered) + 99) // 100 - 1]


def duration_tallies(ordered: Sequence[int]) -> dict[str, Any]:
    """The row's duration aggregates from a day's known durations (µs) in ascending order."""
    return {
        "durations": len(ordered),
        **{f"p{percent}_us": nearest_rank(ordered, percent) for percent in DURATION_PERCENTS},
        "max_us": ordered[-1] if ordered else None,
    }


def _seconds(us: Any) -> float | None:
    return None if us is None else int(us) / 1_000_000


DAILY_DURATION = DailyMeasure(
    name="daily_duration",
    native_path="/daily-duration",
    console_path=None,
    summary="Durations of the finished runs of each day: count, nearest-rank p50/p95/p99, max (seconds)",
    point_type=DailyDuration,
    sql=DailyAggregates(
        over_runs=", ".join(
            [
                "count(duration_us) AS durations",
                *(f"{nearest_rank_sql('duration_us', p)} AS p{p}_us" for p in DURATION_PERCENTS),
                "max(duration_us) AS max_us",
            ]
        ),
        reads=("duration_us",),
        ranks="duration_us",
    ),
    values=lambda row: {
        "count": int(row.durations or 0),
        **{f"p{percent}": _seconds(getattr(row, f"p{percent}_us")) for percent in DURATION_PERCENTS},
        "max": _seconds(row.max_us),
    },
    series=(
        GrafanaSeries("duration_count", "Finished runs with a duration per day", "count"),
        *(
            GrafanaSeries(f"duration_p{p}", f"Run duration p{p} per day (s)", f"p{p}", empty=None)
            for p in DURATION_PERCENTS
        ),
        GrafanaSeries("duration_max", "Longest run per day (s)", "max", empty=None),
    ),
)

DAILY_MEASURES = (
    DAILY_RUNS,
    DAILY_TERMINALS,
    DAILY_TOKEN_COSTS,
    DAILY_INTERACTIONS,
    DAILY_STATUS,
    DAILY_DURATION,
)
MEASURES_BY_NAME = {measure.name: measure for measure in DAILY_MEASURES}
