"""Is a source usable: reachable, its table there, every column the service reads there, and, on
SLS, those fields readable by SQL.

One check serves both `serve` (which refuses to start otherwise) and /readyz. The probe selects
those columns with the simple query protocol, a LIMIT and, on the LogStore, a `__time__`
condition (queries/checks.py), so a missing table or column fails it on SLS as on PostgreSQL, and
it reads at most one row. SLS answers NULL, silently, for a field whose index has analytics turned
off: there the check also counts the values of each field over the last hour of writes (at
start-up, the last week if the hour is empty) and names a field that has none.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from app.config import Dialect, redact_url
from app.demo import COLUMNS, WORKFLOW_RUNS_COLUMNS
from app.logging import redact_credentials
from app.stores.backend import Backend
from app.stores.budget import Budget
from app.stores.sources import Source
from queries.checks import field_counts, schema_probe
from queries.literals import with_literals
from queries.scope import Query

log = structlog.get_logger("dify_stats.readiness")

# Source name -> (table, columns read).
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "logstore": ("workflow_execution", COLUMNS),
    "workflow_runs": ("workflow_runs", WORKFLOW_RUNS_COLUMNS),
}
RETRY_SECONDS = 1.0
# Fields every version Dify writes holds a value in; a field without one is misconfigured (with
# finished_at, which every finished version holds).
REQUIRED_FIELDS = (
    "id", "log_version", "tenant_id", "app_id", "workflow_id", "triggered_from", "type", "status",
    "created_by_role", "created_by", "started_at", "total_tokens",
)  # fmt: skip
RECENT_S = 3_600  # the writes whose fields are counted
START_UP_RECENT_S = 7 * 86_400  # at start-up, when the last hour has none


class SourceProblem(RuntimeError):
    """What is wrong with a source, in one line that holds no credentials."""


class SourceUnreachable(SourceProblem):
    """The source did not accept a connection (it may still be starting)."""


def probe(source: str, dialect: Dialect) -> Query:
    """The schema probe of a source (its LogStore in `dialect`; Dify's table is PostgreSQL)."""
    table, columns = TABLES[source]
    return schema_probe(table, columns, dialect if source == "logstore" else None, int(time.time()))


async def run_check(conn: psycopg.AsyncConnection[Any], query: Query, dialect: Dialect) -> list[Any]:
    """A check statement on a bare connection, as the backend would send it in `dialect`."""
    async with conn.cursor() as cursor:
        if dialect == "sls":
            await cursor.execute(with_literals(query))
        else:
            await cursor.execute(query.sql, query.params)
        return await cursor.fetchall()


async def check_connection(
    conn: psycopg.AsyncConnection[Any], source: str, dialect: Dialect, *, at_start: bool = False
) -> None:
    """Run the probe on an open connection; SourceProblem naming the table, column or field."""
    table = TABLES[source][0]
    try:
        await run_check(conn, probe(source, dialect), dialect)
        if source == "logstore" and dialect == "sls":
            await _check_fields(conn, at_start)
    except psycopg.errors.UndefinedTable:
        raise SourceProblem(f"{source}: table {table} not found") from None
    except psycopg.errors.UndefinedColumn as error:
        raise SourceProblem(f"{source}: {table}: {first_line(error)}") from None
    except psycopg.OperationalError as error:
        raise SourceProblem(f"{source}: not answering ({first_line(error)})") from None
    except psycopg.Error as error:
        raise SourceProblem(f"{source}: reading {table} failed ({first_line(error)})") from None


async def _check_fields(conn: psycopg.AsyncConnection[Any], at_start: bool) -> None:
    """SourceProblem naming the first field that holds no value in recent versions that should."""
    now = int(time.time())
    for window in (RECENT_S, START_UP_RECENT_S) if at_start else (RECENT_S,):
        query = field_counts((*REQUIRED_FIELDS, "finished_at", "created_at"), now - window)
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(with_literals(query))
            found = (await cursor.fetchall())[0]
        if found["versions"]:
            break
    else:
        return  # no recent writes: nothing to judge by
    expected = {field: int(found["versions"]) for field in REQUIRED_FIELDS}
    expected["finished_at"] = int(found["finished"])
    for field, wanted in expected.items():
        if wanted and not int(found[field] or 0):
            raise SourceProblem(
                f"logstore: field {field} reads as NULL in all {wanted} recent versions that must hold "
                "it: turn on analytics (statistics) for it in the logstore's index"
            )
    if not int(found["created_at"] or 0):  # older writers leave it empty: then started_at is read
        log.warning(
            "created_at_never_set", versions=found["versions"], hint="is analytics on for created_at?"
        )


async def check_backend(backend: Backend) -> None:
    """The probe through the service's own pool (for /readyz)."""
    try:
        async with asyncio.timeout(backend.settings.query_timeout + 1):
            async with backend.budget.hold(None), backend.pool.connection() as conn:
                await check_connection(conn, backend.name, backend.dialect)
    except (PoolTimeout, TimeoutError, psycopg.OperationalError) as error:
        raise SourceProblem(f"{backend.name}: not answering ({type(error).__name__})") from None


# When each backend's table and columns last passed the check: /readyz re-checks them at most
# this often, so it does not wait for a pooled connection on every call under load.
_SCHEMA_RECHECK_S = 60.0
_checked_at: weakref.WeakKeyDictionary[Backend, float] = weakref.WeakKeyDictionary()


async def check_sources_lately(sources: Iterable[Source], within: float) -> None:
    """SourceProblem if a table or column is missing. A check that cannot finish within `within`
    (a busy pool, a locked table) proves nothing either way: it is tried again next time."""
    for source in sources:
        if time.monotonic() - _checked_at.get(source.backend, -_SCHEMA_RECHECK_S) < _SCHEMA_RECHECK_S:
            continue
        try:
            async with asyncio.timeout(within):
                await check_backend(source.backend)
        except TimeoutError:
            continue
        _checked_at[source.backend] = time.monotonic()


async def check_url(source: str, url: str, timeout: float, dialect: Dialect = "postgres") -> None:
    """The probe over a fresh connection (at start-up, before any pool exists)."""
    try:
        conn = await fresh_connection(url, timeout)
    except psycopg.Error as error:
        raise SourceUnreachable(f"{source}: cannot connect ({first_line(error)})") from None
    async with conn:
        await check_connection(conn, source, dialect, at_start=True)


async def fresh_connection(url: str, timeout: float) -> psycopg.AsyncConnection[Any]:
    """A connection of its own, set up as the backend's (simple query protocol, autocommit)."""
    return await psycopg.AsyncConnection.connect(
        url,
        autocommit=True,
        prepare_threshold=None,
        cursor_factory=psycopg.AsyncClientCursor,
        connect_timeout=max(1, round(timeout)),
        application_name="dify-stats",
    )


async def wait_for_sources(
    sources: dict[str, str],
    wait: float,
    timeout: float,
    logstore_dialect: Dialect = "postgres",
    budget_of: Callable[[str, str], Budget] | None = None,
) -> None:
    """Check every source (name -> URL), retrying each for up to `wait` seconds in all; the
    SourceProblem raised says which source (its URL with the password hidden) and what.
    `budget_of(source, url)`: the budget each check holds a slot of (the fleet's, with Redis)."""
    deadline = time.monotonic() + wait
    for source, url in sources.items():
        budget = budget_of(source, url) if budget_of is not None else None
        while True:
            try:
                async with budget.hold(None) if budget is not None else nullcontext():
                    await check_url(
                        source, url, timeout, logstore_dialect if source == "logstore" else "postgres"
                    )
                break
            except SourceProblem as problem:
                message = str(problem).replace(f"{source}:", f"{source} {redact_url(url)}:", 1)
                left = deadline - time.monotonic()
                if left <= 0:
                    if isinstance(problem, SourceUnreachable):
                        message += (
                            f"; waited {wait:g} s for it: if it is still starting, set STATS_STARTUP_WAIT "
                            "(or serve --wait) to the seconds it may take"
                        )
                    raise SourceProblem(message) from None
                log.info("waiting_for_source", problem=message, seconds_left=round(left))
                await asyncio.sleep(min(RETRY_SECONDS, left))


def first_line(error: BaseException) -> str:
    """An error's first line with any URL password hidden (libpq messages never hold the
    password, but a URL echoed back might)."""
    lines = str(error).strip().splitlines()
    return redact_credentials(lines[0] if lines else type(error).__name__)
