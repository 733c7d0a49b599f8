"""Is a source usable: reachable, its table there, and every column the service reads there.

One check serves both `serve` (which refuses to start otherwise) and /readyz. The probe selects
those columns with the simple query protocol, a LIMIT and, on the LogStore, a `__time__`
condition (SLS's PostgreSQL endpoint wants one), so a missing table or column fails it on SLS as
on PostgreSQL, and it reads at most one row.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable
from typing import Any

import psycopg
import structlog
from psycopg_pool import PoolTimeout

from app.backend import Backend
from app.config import redact_url
from app.demo import COLUMNS, WORKFLOW_RUNS_COLUMNS
from app.logging import redact_credentials
from app.sources import Source

log = structlog.get_logger("dify_stats.readiness")

# Source name -> (table, columns read, condition).
TABLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "logstore": ("workflow_execution", COLUMNS, " WHERE __time__ > 0"),
    "workflow_runs": ("workflow_runs", WORKFLOW_RUNS_COLUMNS, ""),
}
RETRY_SECONDS = 1.0


class SourceProblem(RuntimeError):
    """What is wrong with a source, in one line that holds no credentials."""


class SourceUnreachable(SourceProblem):
    """The source did not accept a connection (it may still be starting)."""


def probe_sql(source: str) -> str:
    table, columns, condition = TABLES[source]
    return f"SELECT {', '.join(columns)} FROM {table}{condition} LIMIT 1"


async def check_connection(conn: psycopg.AsyncConnection[Any], source: str) -> None:
    """Run the probe on an open connection; SourceProblem naming the table or column missing."""
    table = TABLES[source][0]
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(probe_sql(source))
            await cursor.fetchall()
    except psycopg.errors.UndefinedTable:
        raise SourceProblem(f"{source}: table {table} not found") from None
    except psycopg.errors.UndefinedColumn as error:
        raise SourceProblem(f"{source}: {table}: {first_line(error)}") from None
    except psycopg.OperationalError as error:
        raise SourceProblem(f"{source}: not answering ({first_line(error)})") from None
    except psycopg.Error as error:
        raise SourceProblem(f"{source}: reading {table} failed ({first_line(error)})") from None


async def check_backend(backend: Backend) -> None:
    """The probe through the service's own pool (for /readyz)."""
    try:
        async with asyncio.timeout(backend.settings.query_timeout + 1):
            async with backend.pool.connection() as conn:
                await check_connection(conn, backend.name)
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


async def check_url(source: str, url: str, timeout: float) -> None:
    """The probe over a fresh connection (at start-up, before any pool exists)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url,
            autocommit=True,
            prepare_threshold=None,
            cursor_factory=psycopg.AsyncClientCursor,
            connect_timeout=max(1, round(timeout)),
            application_name="dify-stats",
        )
    except psycopg.Error as error:
        raise SourceUnreachable(f"{source}: cannot connect ({first_line(error)})") from None
    async with conn:
        await check_connection(conn, source)


async def wait_for_sources(sources: dict[str, str], wait: float, timeout: float) -> None:
    """Check every source (name -> URL), retrying each for up to `wait` seconds in all; the
    SourceProblem raised says which source (its URL with the password hidden) and what."""
    deadline = time.monotonic() + wait
    for source, url in sources.items():
        while True:
            try:
                await check_url(source, url, timeout)
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
