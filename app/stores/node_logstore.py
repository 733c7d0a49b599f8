"""The node LogStore `workflow_node_execution` is optional.

Older Dify writers, or deployments that keep node logs elsewhere, have no such logstore; the
service then serves everything else, says so at start-up and on /readyz, and its node routes
answer a 503 naming it. Whether it is there is probed at start-up (one `__time__`-bounded row of
its columns), learnt from any node statement that finds it missing, and re-probed by /readyz
(at most once a minute) while it is absent, so that it is found once Dify starts writing it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from app.config import Dialect
from app.stores.backend import Backend
from app.stores.readiness import first_line, fresh_connection, run_check
from queries.node_executions import NODE_LOGSTORE, node_logstore_probe

RECHECK_S = 60.0


class NodeLogstoreAbsent(RuntimeError):
    """The LogStore has no usable node logstore; the node routes answer 503 with this message."""


class NodeLogstore:
    """What is known of the node logstore: None while usable, else why not (one line)."""

    def __init__(self, problem: str | None = None) -> None:
        self.problem = problem
        self._checked_at = time.monotonic()

    @property
    def state(self) -> str:
        return "present" if self.problem is None else f"absent ({self.problem})"

    def require(self) -> None:
        if self.problem is not None:
            raise NodeLogstoreAbsent(f"node executions are not available: {self.problem}")

    def missing(self, error: BaseException) -> bool:
        """Record `error` if it says the node logstore or one of its fields is missing."""
        if isinstance(error, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
            self.problem = problem_of(error)
            self._checked_at = time.monotonic()
            return True
        return False

    async def recheck(self, backend: Backend, within: float) -> None:
        """While absent, probe again through the pool, at most every RECHECK_S."""
        if self.problem is None or time.monotonic() - self._checked_at < RECHECK_S:
            return
        self._checked_at = time.monotonic()
        try:
            async with asyncio.timeout(within), backend.pool.connection() as conn:
                self.problem = await probe(conn, backend.dialect)
        except (PoolTimeout, TimeoutError, psycopg.OperationalError):
            return  # proves nothing either way


def problem_of(error: BaseException) -> str:
    if isinstance(error, psycopg.errors.UndefinedTable):
        return f"logstore {NODE_LOGSTORE} not found"
    return f"logstore {NODE_LOGSTORE}: {first_line(error)}"


async def probe(conn: psycopg.AsyncConnection[Any], dialect: Dialect) -> str | None:
    """None when the node logstore answers with every field the service reads, else why not."""
    try:
        await run_check(conn, node_logstore_probe(dialect, int(time.time())), dialect)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as error:
        return problem_of(error)
    return None


async def probe_url(url: str, timeout: float, dialect: Dialect) -> str | None:
    """The probe over a fresh connection (at start-up, once the LogStore itself passed its check)."""
    async with await fresh_connection(url, timeout) as conn:
        return await probe(conn, dialect)
