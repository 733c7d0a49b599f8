"""The backend: a psycopg async pool set up for SLS's PostgreSQL endpoint.

SLS speaks only the simple query protocol: no prepared statements (prepare_threshold=None), values
bound on the client (AsyncClientCursor), autocommit, no server-side cursors, no COPY. A plain
PostgreSQL gets the same treatment plus a server-side statement_timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import msgspec
import psycopg
import structlog
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.config import Dialect, Settings
from app.metrics import Metrics, current_figures
from queries.scope import Query

log = structlog.get_logger("dify_stats.backend")
Row = TypeVar("Row")


class BackendUnavailable(RuntimeError):
    """The backend did not answer (down, pool exhausted, or too slow); the API answers 503."""


class Backend:
    def __init__(
        self,
        conninfo: str,
        settings: Settings,
        *,
        extra_options: str = "",
        dialect: Dialect | None = None,
        name: str = "logstore",
    ) -> None:
        """`dialect` defaults to STATS_DIALECT; Dify's own database (`name="workflow_runs"`) is
        always PostgreSQL."""
        self.settings = settings
        self.name = name
        self.metrics: Metrics | None = None
        self.dialect: Dialect = dialect or settings.dialect
        self.plan_label = settings.query_plan if name == "logstore" else "table"
        options = extra_options
        if self.dialect == "postgres":
            # The shortcuts hash-aggregate one row per run; PostgreSQL's default 4 MB work_mem makes
            # that spill to disk at ~100 k runs (measured: 950 ms -> 400 ms for 200 k runs at 64 MB).
            # Read-only sessions: the service never writes, even if handed a writable account.
            timeout_ms = int(settings.query_timeout * 1000)
            options = (
                f"-c statement_timeout={timeout_ms} -c work_mem=64MB "
                f"-c default_transaction_read_only=on {options}"
            ).strip()
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": None,
            "cursor_factory": psycopg.AsyncClientCursor,
            "application_name": "dify-stats",
        }
        if options:
            kwargs["options"] = options
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=settings.pool_size,
            kwargs=kwargs,
            open=False,
            timeout=settings.query_timeout,
            check=AsyncConnectionPool.check_connection,
            name=f"dify-stats-{name}",
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def fetch(self, query: Query, row_type: type[Row]) -> list[Row]:
        """Run one query, rows built by column name; BackendUnavailable when it cannot be
        answered in time.

        The client-side timeout is what bounds a query on SLS (no statement_timeout there): when
        it fires, psycopg cancels the running statement on the server before giving the
        connection back (tests/test_reliability.py checks pg_stat_activity)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.query_timeout + 1):
                async with (
                    self.pool.connection() as conn,
                    conn.cursor(row_factory=class_row(row_type)) as cursor,
                ):
                    await cursor.execute(query.sql, query.params)
                    rows = await cursor.fetchall()
        except (PoolTimeout, TimeoutError, psycopg.OperationalError) as error:
            log.warning("backend_unavailable", source=self.name, error_type=type(error).__name__)
            raise BackendUnavailable(f"{self.name}: {type(error).__name__}") from error
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.backend.labels(source=self.name, plan=self.plan_label).observe(elapsed)
        figures = current_figures.get()
        if figures is not None:
            figures.backend_ms += elapsed * 1000
            figures.backend_queries += 1
        return rows

    async def ping(self) -> None:
        """A trivial query, for /readyz."""
        await self.fetch(Query("SELECT 1 AS ok", {}), _Ok)


class _Ok(msgspec.Struct):
    ok: int
