"""Which SQL answers each question, per source.

- `Planner` (the LogStore): the shortcut by default, the windowed plan under
  STATS_QUERY_PLAN=windowed (for stores whose writer does not keep SPEC 1's invariants).
- `WorkflowRunsPlanner` (Dify's own `workflow_runs` table): one plan, the row is the run.

Both answer the same questions with the same row shapes (`RunQueries`), so the repository can
read either source, or both during a migration, through one interface.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from queries import apps, counts, daily, runs, workflow_runs
from queries.dialects import Dialect
from queries.scope import Query, RunScope

QueryPlan = Literal["shortcut", "windowed"]


class RunQueries(Protocol):
    def daily_runs(self, scope: RunScope, zone: str) -> Query: ...
    def daily_terminals(self, scope: RunScope, zone: str) -> Query: ...
    def daily_token_costs(self, scope: RunScope, zone: str) -> Query: ...
    def daily_interactions(self, scope: RunScope, zone: str) -> Query: ...
    def day_users(self, scope: RunScope, zone: str) -> Query: ...
    def status_counts(self, scope: RunScope, status: str | None) -> Query: ...
    def run_page(
        self, scope: RunScope, limit: int, status: str | None, after: runs.RunPage | None
    ) -> Query: ...
    def run_cursor(self, scope: RunScope, run_id: str) -> Query: ...
    def run_detail(
        self, tenant_id: str, app_id: str, run_id: str, start_us: int | None, end_us: int | None
    ) -> Query: ...
    def apps_with_runs(self, since_epoch_s: int, end_us: int | None) -> Query: ...


class Planner(msgspec.Struct, frozen=True):
    plan: QueryPlan = "shortcut"
    dialect: Dialect = "postgres"

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

    def day_users(self, scope: RunScope, zone: str) -> Query:
        build = daily.day_users_windowed if self.windowed else daily.day_users_shortcut
        return build(scope, zone)

    def status_counts(self, scope: RunScope, status: str | None) -> Query:
        build = counts.status_counts_windowed if self.windowed else counts.status_counts_shortcut
        return build(scope, status)

    def run_page(self, scope: RunScope, limit: int, status: str | None, after: runs.RunPage | None) -> Query:
        build = runs.run_page_windowed if self.windowed else runs.run_page_shortcut
        return build(scope, limit, status, after)

    def run_cursor(self, scope: RunScope, run_id: str) -> Query:
        return runs.run_cursor(scope, run_id)

    def run_detail(
        self, tenant_id: str, app_id: str, run_id: str, start_us: int | None = None, end_us: int | None = None
    ) -> Query:
        build = runs.run_detail_windowed if self.windowed else runs.run_detail_shortcut
        return build(tenant_id, app_id, run_id, start_us=start_us, end_us=end_us, dialect=self.dialect)

    def apps_with_runs(self, since_epoch_s: int, end_us: int | None = None) -> Query:
        """By write time only: a picker's ranking may count a dual-written older run twice."""
        return apps.apps_with_runs(since_epoch_s)


class WorkflowRunsPlanner(msgspec.Struct, frozen=True):
    def daily_runs(self, scope: RunScope, zone: str) -> Query:
        return workflow_runs.daily_runs(scope, zone)

    def daily_terminals(self, scope: RunScope, zone: str) -> Query:
        return workflow_runs.daily_terminals(scope, zone)

    def daily_token_costs(self, scope: RunScope, zone: str) -> Query:
        return workflow_runs.daily_token_costs(scope, zone)

    def daily_interactions(self, scope: RunScope, zone: str) -> Query:
        return workflow_runs.daily_interactions(scope, zone)

    def day_users(self, scope: RunScope, zone: str) -> Query:
        return workflow_runs.day_users(scope, zone)

    def status_counts(self, scope: RunScope, status: str | None) -> Query:
        return workflow_runs.status_counts(scope, status)

    def run_page(self, scope: RunScope, limit: int, status: str | None, after: runs.RunPage | None) -> Query:
        return workflow_runs.run_page(scope, limit, status, after)

    def run_cursor(self, scope: RunScope, run_id: str) -> Query:
        return workflow_runs.run_cursor(scope, run_id)

    def run_detail(
        self, tenant_id: str, app_id: str, run_id: str, start_us: int | None = None, end_us: int | None = None
    ) -> Query:
        return workflow_runs.run_detail(tenant_id, app_id, run_id, start_us=start_us, end_us=end_us)

    def apps_with_runs(self, since_epoch_s: int, end_us: int | None = None) -> Query:
        return workflow_runs.apps_with_runs(since_epoch_s, before_us=end_us)
