"""Every run created in a range, in the run list's order (created time descending, then id
descending), read in keyset pages of bounded size: what `GET .../runs/export` streams.

The statements are the run list's (queries/runs.py), with larger pages:
- shortcut: the keys (id, created time) of EXPORT_KEYS runs from the per-run GROUP BY, then the
  latest versions of EXPORT_ROWS of them at a time (the list's second statement, which names
  its ids as literals). The GROUP BY reads every version written since the range's start, so
  it is sent once per EXPORT_KEYS runs, not once per page;
- windowed and Dify's workflow_runs: EXPORT_PAGE summaries per statement.
Each statement has a top-level LIMIT and no OFFSET: the next one starts after the last run
read (the keyset), so runs sharing a created time are neither skipped nor repeated. Sources are
read newest created times first, as the run list reads them: every run of a later source sorts
after every run of an earlier one.

Memory: one page of keys and one page of summaries at a time, whatever the range holds; the
next page is read only when the previous one has been taken (by a client reading the stream).

Statements per request (STATS_MAX_QUERIES_PER_REQUEST) count per batch here: a batch is what
one page of output needs, at most two statements (the next keys, when due, and the page's
summaries). A long range needs many batches, none of which is refused for the length of the
export; the range itself is bounded like every range (STATS_MAX_RANGE_DAYS). Every statement
takes a slot of the budget and of its tenant's share, as any other (app/stores/backend.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import NamedTuple, TypeVar

from app.core import answers
from app.metrics import RequestFigures, current_figures
from app.stores.backend import Backend
from app.stores.sources import Source
from queries import runs
from queries.rows import RunPageRow
from queries.runs import RunCursor
from queries.scope import RunScope
from schemas.exports import RunExportRequest
from schemas.runs import RunSummary

EXPORT_KEYS = 100_000  # shortcut: run keys per GROUP BY statement (~170 bytes each in memory)
EXPORT_ROWS = 1_000  # shortcut: ids named per summaries statement
EXPORT_PAGE = 10_000  # windowed and workflow_runs: summaries per statement
T = TypeVar("T")


async def one_batch(read: Callable[[], Awaitable[T]]) -> T:
    """`read()` with its statements counted against STATS_MAX_QUERIES_PER_REQUEST on their own,
    then added to the request's figures (its log line shows the export's total)."""
    request_figures = current_figures.get()
    if request_figures is None:
        return await read()
    batch = RequestFigures()
    token = current_figures.set(batch)
    try:
        return await read()
    finally:
        current_figures.reset(token)
        request_figures.backend_queries += batch.backend_queries
        request_figures.backend_ms += batch.backend_ms


class PageSizes(NamedTuple):
    keys: int = EXPORT_KEYS
    rows: int = EXPORT_ROWS
    page: int = EXPORT_PAGE


DEFAULT_SIZES = PageSizes()


class _KeyPages:
    """The shortcut's reading position: the keys read and not yet shown, and the keyset after
    the last key read."""

    def __init__(self, backend: Backend, scope: RunScope, status: str | None, sizes: PageSizes) -> None:
        self.backend, self.scope, self.status, self.sizes = backend, scope, status, sizes
        self.keys: list[RunCursor] = []
        self.shown = 0
        self.after: RunCursor | None = None
        self.more = True

    async def next_page(self) -> list[RunPageRow]:
        """The next page's summaries (reading the next keys first when due); [] at the end."""
        if self.shown == len(self.keys):
            if not self.more:
                return []
            query = runs.run_page(self.scope, self.sizes.keys, self.status, self.after)
            self.keys = []  # the shown keys are let go before the next ones arrive
            self.keys = await self.backend.fetch(query, RunCursor)
            self.shown = 0
            self.more = len(self.keys) == self.sizes.keys
            if not self.keys:
                return []
            self.after = self.keys[-1]
        chosen = self.keys[self.shown : self.shown + self.sizes.rows]
        self.shown += len(chosen)
        return await self.backend.fetch(runs.run_page_rows(self.scope, chosen), RunPageRow)


class RunExport:
    """The run export over the configured sources (newest created times first)."""

    def __init__(
        self,
        sources: Sequence[Source],
        wall_clock: Callable[[], float] = time.time,
        sizes: PageSizes = DEFAULT_SIZES,
    ) -> None:
        self.sources = tuple(sources)
        self.wall_clock = wall_clock
        self.sizes = sizes

    async def pages(self, request: RunExportRequest) -> AsyncGenerator[list[RunSummary], None]:
        """The runs in list order, a page at a time; never an empty page."""
        for source in self.sources:
            scope = source.scope(
                request.tenant_id,
                request.app_id,
                request.triggered_from,
                request.start_us,
                request.end_us,
                self.wall_clock(),
            )
            if scope is None:
                continue
            read = _key_pages if scope.plan == "shortcut" else _row_pages
            async for rows in read(source.backend, scope, request.status, self.sizes):
                yield answers.run_summaries(rows)


async def _key_pages(
    backend: Backend, scope: RunScope, status: str | None, sizes: PageSizes
) -> AsyncIterator[list[RunPageRow]]:
    position = _KeyPages(backend, scope, status, sizes)
    while rows := await one_batch(position.next_page):
        yield rows


async def _row_pages(
    backend: Backend, scope: RunScope, status: str | None, sizes: PageSizes
) -> AsyncIterator[list[RunPageRow]]:
    after: RunCursor | None = None
    while True:
        query = runs.run_page(scope, sizes.page, status, after)
        rows = await one_batch(partial(backend.fetch, query, RunPageRow))
        if rows:
            yield rows
        if len(rows) < sizes.page:
            return
        after = RunCursor(created_us=int(rows[-1].created_us), id=str(rows[-1].id))
