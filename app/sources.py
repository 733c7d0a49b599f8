"""Where runs are read from: the LogStore, Dify's own `workflow_runs` table, or both.

During a migration (SPEC 2, "Two sources") each source owns a range of *created* times: runs
created before STATS_LOGSTORE_SINCE are read from `workflow_runs`, the rest from the LogStore.
Created time never changes, so every run belongs to exactly one source, and rows a source holds
outside its range (dual-written copies) are never read.
"""

from __future__ import annotations

from typing import NamedTuple

from app.backend import Backend
from app.config import Settings
from queries.planner import Planner, RunQueries, WorkflowRunsPlanner
from queries.timezones import to_epoch_us


class Source(NamedTuple):
    """One store, the queries that read it, and the created times [start_us, end_us) it answers."""

    name: str
    backend: Backend
    queries: RunQueries
    start_us: int | None = None
    end_us: int | None = None
    # Run list pages first try recent created-time windows: a store that cannot walk runs in
    # created order (the LogStore) otherwise reads an app's whole history for one page.
    pages_by_window: bool = False

    def clip(self, start_us: int | None, end_us: int | None) -> tuple[int | None, int | None] | None:
        """The part of [start_us, end_us) this source answers, or None when there is none."""
        return overlap(start_us, end_us, self.start_us, self.end_us)


def overlap(
    start_us: int | None, end_us: int | None, other_start_us: int | None, other_end_us: int | None
) -> tuple[int | None, int | None] | None:
    """The intersection of two created-time ranges (None = unbounded), or None when empty."""
    starts = [bound for bound in (start_us, other_start_us) if bound is not None]
    ends = [bound for bound in (end_us, other_end_us) if bound is not None]
    low, high = (max(starts) if starts else None), (min(ends) if ends else None)
    if low is not None and high is not None and low >= high:
        return None
    return low, high


def build_sources(
    settings: Settings, logstore: Backend | None, workflow_runs: Backend | None
) -> tuple[Source, ...]:
    """The configured sources, newest created times first (the run list reads them in order).

    One backend: it answers everything. Both: split at STATS_LOGSTORE_SINCE (load_settings has
    checked that it is set)."""
    if workflow_runs is None:
        if logstore is None:
            raise ValueError("no source configured")
        return (_logstore(settings, logstore),)
    if logstore is None:
        return (_workflow_runs(workflow_runs),)
    if settings.logstore_since is None:
        raise ValueError("two sources need STATS_LOGSTORE_SINCE")
    since_us = to_epoch_us(settings.logstore_since)
    return (
        _logstore(settings, logstore)._replace(start_us=since_us),
        _workflow_runs(workflow_runs)._replace(end_us=since_us),
    )


def _logstore(settings: Settings, backend: Backend) -> Source:
    planner = Planner(plan=settings.query_plan, dialect=backend.dialect)
    return Source("logstore", backend, planner, pages_by_window=True)


def _workflow_runs(backend: Backend) -> Source:
    return Source("workflow_runs", backend, WorkflowRunsPlanner())
