"""The backend: a psycopg async pool set up for SLS's PostgreSQL endpoint.

SLS speaks only the simple query protocol: no prepared statements (prepare_threshold=None), values
bound on the client (AsyncClientCursor), autocommit, no server-side cursors, no COPY. A plain
PostgreSQL gets the same treatment plus a server-side statement_timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import msgspec
import psycopg
import structlog
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.config import Dialect, Settings
from app.metrics import Metrics, current_figures
from app.stores.breaker import CircuitBreaker
from app.stores.budget import Budget, LocalBudget, store_identity
from app.stores.fairness import current_tenant
from queries.checks import connection_check
from queries.literals import with_literals
from queries.scope import Query

log = structlog.get_logger("dify_stats.backend")
Row = TypeVar("Row")

# How long a query waits for a pooled connection before the breaker is asked whether the store
# answers at all (it then keeps waiting, up to the query timeout, only if it does).
FIRST_WAIT = 0.5
# psycopg_pool retries a failed connection with a doubling back-off for `reconnect_timeout`
# (default 5 minutes: 46 s to recover was measured). Giving up after 2 s keeps every retry
# delay under a second; the next query then starts a fresh attempt at once.
RECONNECT_TIMEOUT = 2.0
# How long the breaker's probe waits for a slot of the budget (it is then busy, not down).
PROBE_SLOT_WAIT = 0.5
# How long the end of a request waits for its cancelled statements to be cancelled on the server.
CANCEL_WAIT = 5.0

# The tasks running a statement for the current request (or shared cache load): whatever is
# still running when it ends is cancelled, and psycopg then cancels the statement on the server.
running_statements: contextvars.ContextVar[set[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "running_statements", default=None
)


# Where each statement is shown as sent, values in (`python -m app query --sql`); None: nowhere.
statement_echo: contextvars.ContextVar[Callable[[str, str], None] | None] = contextvars.ContextVar(
    "statement_echo", default=None
)


class BackendUnavailable(RuntimeError):
    """The backend did not answer (down, pool exhausted, too slow, or out of its query quota); the
    API answers 503, or a stale answer."""


class BackendFailed(RuntimeError):
    """The backend refused the statement itself (bad SQL, a value it cannot parse): a defect, not
    an outage; the API answers 500 and the log says which kind."""


# SLS's "too many queries" answers: a short retry, then a 503 (never a 500).
QUOTA_RETRY_DELAYS = (0.2, 0.6)
# SLS does not document the text of its quota errors; these words, or PostgreSQL's classes 53
# (insufficient resources) and 54 (program limit exceeded), mean one.
_QUOTA_WORDS = ("quota", "too many", "concurren", "exceed", "throttl")


def error_kind(error: Exception) -> str:
    """unavailable, quota, bad_sql, bad_data or other: what failed, for logs, metrics and the
    answer (only unavailable and quota are the store's fault and worth a retry or a stale answer)."""
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    message = str(error).lower()
    if sqlstate[:2] in ("53", "54") or any(word in message for word in _QUOTA_WORDS):
        return "quota"
    if isinstance(error, PoolTimeout | TimeoutError | psycopg.OperationalError):
        return "unavailable"
    if sqlstate.startswith("42") or isinstance(error, psycopg.ProgrammingError):
        return "bad_sql"
    if sqlstate.startswith("22") or isinstance(error, psycopg.DataError):
        return "bad_data"
    return "other"


class TooManyQueries(RuntimeError):
    """A request needs more backend statements than STATS_MAX_QUERIES_PER_REQUEST; a 400."""


@asynccontextmanager
async def statement_scope() -> AsyncIterator[None]:
    """Statements started inside end with it: on the way out any still running (the sibling of a
    failed `gather`, a query of a request whose client went away) is cancelled, and waited for
    a bounded time so that the server is free of it when the scope is left."""
    running: set[asyncio.Task[Any]] = set()
    token = running_statements.set(running)
    try:
        yield
    finally:
        running_statements.reset(token)
        leftovers = [task for task in running if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=CANCEL_WAIT)


async def run_check(conn: psycopg.AsyncConnection[Any], dialect: Dialect) -> None:
    """The connection check (queries/checks.py), not psycopg_pool's empty statement: SLS documents
    neither that nor a SELECT without FROM, and refusing it would discard every connection."""
    check = connection_check(dialect, int(time.time()))
    async with conn.cursor() as cursor:
        await cursor.execute(with_literals(check) if dialect == "sls" else check.sql, None)
        await cursor.fetchall()


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
            check=partial(run_check, dialect=self.dialect),
            reconnect_timeout=RECONNECT_TIMEOUT,
            name=f"dify-stats-{name}",
        )
        self._conninfo, self._connect_kwargs = conninfo, kwargs
        # Back from an outage, the pool's idle connections are dead: psycopg_pool's check on
        # getconn discards them one by one with a growing back-off (30 s for 8 was measured),
        # so they are all checked, and replaced, before the circuit closes.
        self.breaker = CircuitBreaker(name, self._probe, settings.probe_interval, recovered=self._check_idle)
        # One replica's budget; replicas sharing a Redis replace it with the fleet's (app/main.py).
        self.budget: Budget = LocalBudget(settings.pool_size, settings.tenant_share)
        self._returning: set[asyncio.Future[None]] = set()

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.breaker.close()
        await self.pool.close()

    async def fetch(self, query: Query, row_type: type[Row]) -> list[Row]:
        """Run one query, rows built by column name; BackendUnavailable when it cannot be
        answered in time.

        The client-side timeout is what bounds a query on SLS (no statement_timeout there): when
        it fires, or the request ends first, psycopg cancels the running statement on the server
        before giving the connection back (tests/test_reliability.py checks pg_stat_activity).
        The request's tenant (`current_tenant`, else the tenant the statement is bound to) holds
        one of its pool slots meanwhile."""
        figures = current_figures.get()
        if figures is not None:
            figures.backend_queries += 1
            if figures.backend_queries > self.settings.max_queries_per_request:
                raise TooManyQueries(
                    f"this request needs more than {self.settings.max_queries_per_request} backend "
                    "queries (STATS_MAX_QUERIES_PER_REQUEST); ask for fewer targets or a shorter range"
                )
        if self.breaker.is_open:
            raise BackendUnavailable(f"{self.name}: not answering (circuit open)")
        tenant = current_tenant.get() or _bound_tenant(query)
        running, task = running_statements.get(), asyncio.current_task()
        if running is not None and task is not None:
            running.add(task)
        started = time.perf_counter()
        try:
            for retry_delay in (*QUOTA_RETRY_DELAYS, None):
                try:
                    rows = await self._execute(query, row_type, tenant)
                    break
                except (PoolTimeout, TimeoutError, psycopg.Error) as error:
                    kind = error_kind(error)
                    self._count_error(kind, error)
                    if kind == "quota" and retry_delay is not None:
                        await asyncio.sleep(retry_delay)  # the store's shared budget frees up quickly
                        continue
                    if kind == "unavailable" and _connection_failed(error):
                        self.breaker.suspect()
                    if kind in ("unavailable", "quota"):
                        raise BackendUnavailable(f"{self.name}: {kind}") from error
                    raise BackendFailed(f"{self.name}: {kind} ({type(error).__name__})") from error
        finally:
            if running is not None and task is not None:
                running.discard(task)
        self.breaker.answered()
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.backend.labels(source=self.name, plan=self.plan_label).observe(elapsed)
        if figures is not None:
            figures.backend_ms += elapsed * 1000
        return rows

    async def _execute(self, query: Query, row_type: type[Row], tenant: str | None) -> list[Row]:
        """One attempt; SLS gets the statement with its values written in (queries/literals.py),
        PostgreSQL binds them on the client."""
        async with asyncio.timeout(self.settings.query_timeout + 1), self.budget.hold(tenant):
            conn = await self._connection()
            try:
                async with conn.cursor(row_factory=class_row(row_type)) as cursor:
                    echo = statement_echo.get()
                    if self.dialect == "sls":
                        sent = with_literals(query)
                        if echo is not None:
                            echo(self.name, sent)
                        await cursor.execute(sent)
                    else:
                        if echo is not None:
                            echo(self.name, cursor.mogrify(query.sql, query.params))  # type: ignore[attr-defined]
                        await cursor.execute(query.sql, query.params)
                    return await cursor.fetchall()
            finally:
                await self.pool.putconn(conn)

    def _count_error(self, kind: str, error: Exception) -> None:
        """One log line and one metric per failed attempt; never the statement or its values."""
        sqlstate = getattr(error, "sqlstate", None)
        log.warning(
            "backend_error", source=self.name, kind=kind, error_type=type(error).__name__, sqlstate=sqlstate
        )
        if self.metrics is not None:
            self.metrics.backend_errors.labels(source=self.name, kind=kind).inc()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """A pooled connection, waited for in the pool's queue. Every FIRST_WAIT of waiting the
        breaker is asked whether the store answers at all: while it is down this fails in about
        a second instead of after the whole query timeout."""
        getting = asyncio.ensure_future(self.pool.getconn())
        try:
            while True:
                done, _ = await asyncio.wait({getting}, timeout=FIRST_WAIT)
                if done:
                    return getting.result()
                if not await self.breaker.confirm():
                    raise BackendUnavailable(f"{self.name}: not answering (circuit open)")
        except BaseException:
            getting.cancel()
            getting.add_done_callback(self._give_back)
            raise

    def _give_back(self, getting: asyncio.Future[psycopg.AsyncConnection[Any]]) -> None:
        """A connection the pool handed over just as its caller gave up goes back to the pool."""
        if not getting.cancelled() and getting.exception() is None:
            self._returning.add(task := asyncio.ensure_future(self.pool.putconn(getting.result())))
            task.add_done_callback(self._returning.discard)

    async def _probe(self) -> None:
        """One fresh connection (not the pool's, whose reconnect back-off must not delay
        recovery) and the connection check, holding a slot of the budget like any statement.
        When no slot frees up within PROBE_SLOT_WAIT, other statements are running: the store
        is busy, not down, and the probe says nothing against it."""
        async with AsyncExitStack() as holding:
            try:
                async with asyncio.timeout(PROBE_SLOT_WAIT):
                    await holding.enter_async_context(self.budget.hold(None))
            except TimeoutError:
                return
            kwargs = {**self._connect_kwargs, "application_name": "dify-stats-probe"}
            conn = await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)
            try:
                await run_check(conn, self.dialect)
            finally:
                await conn.close()

    async def _check_idle(self) -> None:
        """Back from an outage: every idle connection checked (one at a time, in one slot)."""
        async with self.budget.hold(None):
            await self.pool.check()

    @property
    def identity(self) -> str:
        """The store this backend reads, the same on every replica (the fleet's budget key)."""
        return store_identity(self._conninfo, self.name)

    async def ready(self) -> None:
        """For /readyz: BackendUnavailable unless the store answered lately or answers a probe now;
        never waits behind the pool."""
        if self.breaker.is_open or not (self.breaker.answered_lately() or await self.breaker.confirm()):
            raise BackendUnavailable(f"{self.name}: not answering (circuit {self.breaker.state})")

    async def ping(self) -> None:
        """The connection check through the pool (the pool's own check, then the same statement)."""
        await self.fetch(connection_check(self.dialect, int(time.time())), _Ok)


class _Ok(msgspec.Struct):
    ok: int


def _bound_tenant(query: Query) -> str | None:
    tenant = query.params.get("tenant_id")
    return tenant if isinstance(tenant, str) else None


def _connection_failed(error: Exception) -> bool:
    """A lost or refused connection (the store may be down), not a slow or cancelled statement."""
    return isinstance(error, psycopg.OperationalError) and not isinstance(error, psycopg.errors.QueryCanceled)
