"""The four daily measures, each declared once.

Everything that differs between measures is here: where it is served (native path, Dify console
path, Grafana metric), what its answer calls the value, the SQL aggregates every plan and source
wraps (queries/daily.py), and how a day's row becomes the value. Routes, the Grafana catalogue,
the repository, `check-sls` and the tests iterate `DAILY_MEASURES`; nothing else names a measure.

Aggregates are named after what they count, so rows convert by name (queries/rows.DailyRow):
`runs` (runs created that day), `users` (distinct `created_by`) and `tokens` (sum of each run's
latest `total_tokens`). Over one row per run, runs are `count(*)`; over every version (the SLS
shortcut) they are `count(DISTINCT id)`. Distinct users are per day, so two sources' users are
united on the day holding the boundary between them (`counts_users`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import msgspec

from queries.daily import DailyAggregates
from queries.rows import DailyRow
from schemas.statistics import DailyInteractions, DailyRuns, DailyTerminals, DailyTokenCosts

_HUNDREDTH = Decimal("0.01")


def interactions(runs: int, users: int) -> float:
    """runs / distinct users, rounded to 2 decimals half-even: exactly Dify's average of per-user
    run counts, computed on integers so no float rounding creeps in."""
    return float((Decimal(int(runs)) / Decimal(int(users))).quantize(_HUNDREDTH, rounding=ROUND_HALF_EVEN))


class DailyMeasure(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # the cache's and the logs' name
    native_path: str  # under /v1/tenants/{tenant_id}/apps/{app_id}/statistics
    console_path: str  # under Dify's /console/api/apps/{app_id}/workflow/statistics
    grafana_metric: str
    grafana_label: str
    summary: str
    point_type: type[Any]  # the answer's struct for one day: `date` and `answer_field`
    answer_field: str
    sql: DailyAggregates
    value: Callable[[DailyRow], int | float]
    counts_users: bool = False

    def point(self, day: str, row: DailyRow) -> Any:
        return self.point_type(**{"date": day, self.answer_field: self.value(row)})


DAILY_RUNS = DailyMeasure(
    name="daily_runs",
    native_path="/daily-runs",
    console_path="/daily-conversations",
    grafana_metric="daily_runs",
    grafana_label="Daily runs",
    summary="Runs per local day (every status)",
    point_type=DailyRuns,
    answer_field="runs",
    sql=DailyAggregates(over_runs="count(*) AS runs", over_versions="count(DISTINCT id) AS runs"),
    value=lambda row: int(row.runs),
)
DAILY_TERMINALS = DailyMeasure(
    name="daily_terminals",
    native_path="/daily-terminals",
    console_path="/daily-terminals",
    grafana_metric="daily_terminals",
    grafana_label="Daily terminals (distinct users)",
    summary="Distinct users per day",
    point_type=DailyTerminals,
    answer_field="terminal_count",
    sql=DailyAggregates(
        over_runs="count(DISTINCT created_by) AS users", over_versions="count(DISTINCT created_by) AS users"
    ),
    value=lambda row: int(row.users),
    counts_users=True,
)
DAILY_TOKEN_COSTS = DailyMeasure(
    name="daily_token_costs",
    native_path="/token-costs",
    console_path="/token-costs",
    grafana_metric="token_costs",
    grafana_label="Daily token costs",
    summary="Tokens of the runs of each day",
    point_type=DailyTokenCosts,
    answer_field="token_count",
    sql=DailyAggregates(over_runs="sum(total_tokens) AS tokens", reads_tokens=True),
    value=lambda row: int(row.tokens or 0),
)
DAILY_INTERACTIONS = DailyMeasure(
    name="daily_interactions",
    native_path="/average-interactions",
    console_path="/average-app-interactions",
    grafana_metric="average_interactions",
    grafana_label="Average interactions per user",
    summary="Runs per user per day (2 decimals, half-even)",
    point_type=DailyInteractions,
    answer_field="interactions",
    sql=DailyAggregates(
        over_runs="count(*) AS runs, count(DISTINCT created_by) AS users",
        over_versions="count(DISTINCT id) AS runs, count(DISTINCT created_by) AS users",
    ),
    value=lambda row: interactions(row.runs, row.users),
    counts_users=True,
)

DAILY_MEASURES = (DAILY_RUNS, DAILY_TERMINALS, DAILY_TOKEN_COSTS, DAILY_INTERACTIONS)
MEASURES_BY_NAME = {measure.name: measure for measure in DAILY_MEASURES}
