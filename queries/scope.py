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

# Latest version first: the truth is the row with the largest log_version, then __time__; past
# those, tokens and status make the order complete, so no result depends on how rows arrive.
# NULLs (a field SLS could not read) sort last, as in dialects.latest_key_sql, which reads them as
# the lowest values; said explicitly, since Presto and PostgreSQL put NULLs at opposite ends of a
# descending order.
LATEST_FIRST = (
    "log_version DESC NULLS LAST, __time__ DESC NULLS LAST, "
    "coalesce(total_tokens, 0) DESC, coalesce(status, '') DESC"
)


class Query(NamedTuple):
    """SQL text with `%(name)s` placeholders and the values to bind.

    `page_size`: the statement reads one keyset page of that many rows (its top-level LIMIT);
    a full page means there may be more, read with the next page's statement."""

    sql: str
    params: dict[str, object]
    page_size: int | None = None


def keyset_page(
    sql: str, params: dict[str, object], key: tuple[str, ...], after: tuple[object, ...] | None, size: int
) -> Query:
    """One page of `sql`'s rows in `key` order, after the key values `after` (None: the first).

    SLS answers at most the LIMIT a statement states, so a result that may be long is read in
    pages; the key must be unique among the rows, so pages neither skip nor repeat one."""
    where, after_values = keyset_where(key, after)
    values = {**params, **after_values}
    order = ", ".join(f"{column} NULLS LAST" for column in key)  # the NULL-day row last, said
    paged = f"""
SELECT *
FROM ({sql}
) AS result
WHERE {where}
ORDER BY {order}
LIMIT {int(size)}"""
    return Query(paged, values, page_size=size)


def keyset_where(key: tuple[str, ...], after: tuple[object, ...] | None) -> tuple[str, dict[str, object]]:
    """The condition "`key` sorts after the values `after`" (always true when None), written out
    column by column, and the values it binds (`after_0`, `after_1`, ...)."""
    if after is None:
        return "1 = 1", {}
    alternatives = []
    for position, column in enumerate(key):
        equal = [f"{key[n]} = %(after_{n})s" for n in range(position)]
        alternatives.append(" AND ".join([*equal, f"{column} > %(after_{position})s"]))
    where = " OR ".join(f"({alternative})" for alternative in alternatives)
    return f"({where})", {f"after_{n}": value for n, value in enumerate(after)}


class RunScope(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    triggered_from: str | None  # None: every trigger source (run detail)
    start_us: int | None = None  # created time, inclusive (epoch µs)
    end_us: int | None = None  # created time, exclusive (epoch µs)
    time_slack_s: int = 3600
    dialect: Dialect = "postgres"
    plan: Plan = "shortcut"
    written_since_s: int | None = None  # only versions written from then on (a refresh of kept runs)
    written_until_s: int | None = None  # and up to then (a day whose later writes are known to be none)
    retained_since_s: int | None = None  # the oldest write the store still holds (its retention)
    read_at_s: int | None = None  # wall clock of the read (None: unknown), see created_span
    # One part of the runs, by their user: created_by in [users_from, users_to) (None: unbounded).
    # A run's user never changes (the writer's invariant 1), so every version of a run is in the
    # same part: parts add up exactly for runs, users, tokens and statuses, and can be read at once.
    users_from: str | None = None
    users_to: str | None = None

    def params(self) -> dict[str, object]:
        values: dict[str, object] = {"tenant_id": self.tenant_id, "app_id": self.app_id}
        if self.triggered_from is not None:
            values["triggered_from"] = self.triggered_from
        if self.start_us is not None:
            values["start_us"] = self.start_us
        if self.end_us is not None:
            values["end_us"] = self.end_us
        bounds = [
            bound
            for bound in (self._created_time_bound(), self.written_since_s, self.retained_since_s)
            if bound is not None
        ]
        if bounds:
            values["min_time"] = max(bounds)
        if self.written_until_s is not None:
            values["max_time"] = self.written_until_s
        if self.users_from is not None:
            values["users_from"] = self.users_from
        if self.users_to is not None:
            values["users_to"] = self.users_to
        return values

    def created_span(self) -> tuple[int | None, int | None]:
        """The created times the scope's runs can have: its range, whose end is at most the read's
        instant plus the slack (every row of a run is written at or after its created time, up to
        the slack, so no run read then was created later). Local days are tabulated over it."""
        if self.read_at_s is None:
            return self.start_us, self.end_us
        latest_us = (self.read_at_s + self.time_slack_s) * 1_000_000
        return self.start_us, latest_us if self.end_us is None else min(self.end_us, latest_us)

    def _created_time_bound(self) -> int | None:
        return None if self.start_us is None else self.start_us // 1_000_000 - self.time_slack_s


def time_where(scope: RunScope) -> str:
    """The `__time__` condition every LogStore statement carries (SLS's own reader always sends
    one; `__time__ > 0` asks for everything). Every row of a run is written at or after its
    created time (up to clock skew), so rows before start - slack cannot matter; a refresh of
    kept runs also needs none written before its `written_since_s`; and nothing is left before
    the store's retention (`retained_since_s`), which bounds an open start. `written_until_s`
    bounds it above where no later write can matter (a settled day whose runs are known to have
    been written no later, app/core/settled.py)."""
    bounds = (scope.start_us, scope.written_since_s, scope.retained_since_s)
    bounded = any(bound is not None for bound in bounds)
    where = "__time__ >= %(min_time)s" if bounded else "__time__ > 0"
    return where if scope.written_until_s is None else f"{where} AND __time__ <= %(max_time)s"


def app_rows_where(scope: RunScope, *, with_trigger: bool = True) -> str:
    """Row filter on immutable fields, plus `__time__` pruning."""
    clauses = ["tenant_id = %(tenant_id)s", "app_id = %(app_id)s"]
    if with_trigger and scope.triggered_from is not None:
        clauses.append("triggered_from = %(triggered_from)s")
    clauses.append(time_where(scope))
    if scope.users_from is not None:
        clauses.append("coalesce(created_by, '') >= %(users_from)s")
    if scope.users_to is not None:
        clauses.append("coalesce(created_by, '') < %(users_to)s")
    return " AND ".join(clauses)


def created_range_where(scope: RunScope, column: str = "created_us") -> str:
    """Created time in [start, end), on the integer µs epoch; a run whose created time does not
    parse (NULL) is in no range."""
    clauses = [f"{column} IS NOT NULL"]
    if scope.start_us is not None:
        clauses.append(f"{column} >= %(start_us)s")
    if scope.end_us is not None:
        clauses.append(f"{column} < %(end_us)s")
    return " AND ".join(clauses)
