"""What every query is about: one app of one tenant, one trigger source, a created-time range,
read from one table with one plan.

Values reach SQL only as bound parameters (client-side binding, SLS has no server-side one) or,
for integers computed here, as literals; callers validate every input before building a scope.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import msgspec

from queries.dialects import Dialect

LOGSTORE_TABLE = "workflow_execution"

# How a run's current state is read:
# - shortcut: the LogStore, relying on the writer's invariants (see queries/README.md);
# - windowed: the LogStore, latest version of every run by ROW_NUMBER() (no invariant needed);
# - workflow_runs: Dify's own PostgreSQL table, whose row *is* the run (nothing to choose).
Plan = Literal["shortcut", "windowed", "workflow_runs"]

# Latest version first: the truth is the row with the largest log_version (then __time__).
LATEST_FIRST = "log_version DESC, __time__ DESC"


class Query(NamedTuple):
    """SQL text with `%(name)s` placeholders and the values to bind."""

    sql: str
    params: dict[str, object]


class RunScope(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: str | None  # None: every trigger source (run detail)
    start_us: int | None = None  # created time, inclusive (epoch µs)
    end_us: int | None = None  # created time, exclusive (epoch µs)
    time_slack_s: int = 3600
    dialect: Dialect = "postgres"
    plan: Plan = "shortcut"

    def params(self) -> dict[str, object]:
        values: dict[str, object] = {"tenant_id": self.tenant_id, "app_id": self.app_id}
        if self.triggered_from is not None:
            values["triggered_from"] = self.triggered_from
        if self.start_us is not None:
            values["start_us"] = self.start_us
            values["min_time"] = self.start_us // 1_000_000 - self.time_slack_s
        if self.end_us is not None:
            values["end_us"] = self.end_us
        return values


def app_rows_where(scope: RunScope, *, with_trigger: bool = True) -> str:
    """Row filter on immutable fields, plus `__time__` pruning: every row of a run is written at or
    after its created time (up to clock skew), so rows before start - slack cannot matter."""
    clauses = ["tenant_id = %(tenant_id)s", "app_id = %(app_id)s"]
    if with_trigger and scope.triggered_from is not None:
        clauses.append("triggered_from = %(triggered_from)s")
    if scope.start_us is not None:
        clauses.append("__time__ >= %(min_time)s")
    return " AND ".join(clauses)


def created_range_where(scope: RunScope, column: str = "created_us") -> str:
    """Created time in [start, end), on the integer µs epoch (`1 = 1` when unbounded)."""
    clauses = []
    if scope.start_us is not None:
        clauses.append(f"{column} >= %(start_us)s")
    if scope.end_us is not None:
        clauses.append(f"{column} < %(end_us)s")
    return " AND ".join(clauses) or "1 = 1"
