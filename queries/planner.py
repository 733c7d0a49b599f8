"""Picks a plan per measure: the shortcut by default, the windowed plan under
STATS_QUERY_PLAN=windowed (for stores whose writer does not keep SPEC 1's invariants)."""

from __future__ import annotations

from typing import Literal

import msgspec

from queries import counts, daily, runs
from queries.scope import Query, RunScope

QueryPlan = Literal["shortcut", "windowed"]


class Planner(msgspec.Struct, frozen=True):
    plan: QueryPlan = "shortcut"

    @property
    def windowed(self) -> bool:
        return self.plan == "windowed"

    def daily_runs(self, scope: RunScope, zone: str) -> Query:
        build = daily.daily_runs_windowed if self.windowed else daily.daily_runs_shortcut
        return build(scope, zone)

    def daily_terminals(self, scope: RunScope, zone: str) -> Query:
        build = daily.daily_terminals_windowed if self.windowed else daily.daily_terminals_shortcut
        return build(scope, zone)

    def daily_token_costs(self, scope: RunScope, zone: str) -> Query:
        build = daily.daily_token_costs_windowed if self.windowed else daily.daily_token_costs_shortcut
        return build(scope, zone)

    def daily_interactions(self, scope: RunScope, zone: str) -> Query:
        build = daily.daily_interactions_windowed if self.windowed else daily.daily_interactions_shortcut
        return build(scope, zone)

    def status_counts(self, scope: RunScope, status: str | None) -> Query:
        build = counts.status_counts_windowed if self.windowed else counts.status_counts_shortcut
        return build(scope, status)

    def run_page(self, scope: RunScope, limit: int, status: str | None, after: runs.RunPage | None) -> Query:
        build = runs.run_page_windowed if self.windowed else runs.run_page_shortcut
        return build(scope, limit, status, after)

    def run_cursor(self, scope: RunScope, run_id: str) -> Query:
        return runs.run_cursor(scope, run_id)

    def run_detail(self, tenant_id: str, app_id: str, run_id: str) -> Query:
        build = runs.run_detail_windowed if self.windowed else runs.run_detail_shortcut
        return build(tenant_id, app_id, run_id)
