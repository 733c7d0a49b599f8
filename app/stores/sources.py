"""Where runs are read from: the LogStore, Dify's own `workflow_runs` table, or both.

During a migration each source owns a range of *created* times: runs created before
STATS_LOGSTORE_SINCE are read from `workflow_runs`, the rest from the LogStore. Created time
never changes, so every run belongs to exactly one source, and rows a source holds outside its
range (dual-written copies) are never read.
"""

from __future__ import annotations

from typing import NamedTuple

from app.config import Settings
from app.core.days import to_epoch_us
from app.stores.backend import Backend
from queries.scope import Plan, RunScope


class Source(NamedTuple):
    """One store, how it is read, and the created times [start_us, end_us) it answers."""

    name: str
    backend: Backend
    plan: Plan
    time_slack_s: int = 3600
    start_us: int | None = None
    end_us: int | None = None
    retention_s: int | None = None  # how long the store keeps a row (ALIYUN_SLS_LOGSTORE_TTL)

    @property
    def pages_by_window(self) -> bool:
        """Run list pages first try recent created-time windows: the LogStore cannot walk runs in
        created order, so a page would otherwise read an app's whole history."""
        return self.plan != "workflow_runs"

    def scope(
        self,
        tenant_id: str,
        app_id: str,
        triggered_from: str | None,
        start_us: int | None,
        end_us: int | None,
        now_s: float | None = None,
    ) -> RunScope | None:
        """The part of [start_us, end_us) this source answers, as a scope of its own plan and
        dialect; None when it answers none of it. With a retention, no statement reads writes
        older than it (`now_s` - retention): an open start does not scan the whole store. Read
        at `now_s`, an open end's local days are tabulated up to it plus the slack."""
        owned = overlap(start_us, end_us, self.start_us, self.end_us)
        if owned is None:
            return None
        retained = None if self.retention_s is None or now_s is None else int(now_s) - self.retention_s
        return RunScope(
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=triggered_from,
            start_us=owned[0],
            end_us=owned[1],
            time_slack_s=self.time_slack_s,
            dialect=self.backend.dialect,
            plan=self.plan,
            retained_since_s=retained,
            read_at_s=None if now_s is None else int(now_s),
        )


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
    retention_s = None if settings.logstore_ttl_days is None else settings.logstore_ttl_days * 86_400
    logstore_source = (
        Source("logstore", logstore, settings.query_plan, settings.time_slack, retention_s=retention_s)
        if logstore
        else None
    )
    workflow_runs_source = Source("workflow_runs", workflow_runs, "workflow_runs") if workflow_runs else None
    if workflow_runs_source is None:
        if logstore_source is None:
            raise ValueError("no source configured")
        return (logstore_source,)
    if logstore_source is None:
        return (workflow_runs_source,)
    if settings.logstore_since is None:
        raise ValueError("two sources need STATS_LOGSTORE_SINCE")
    since_us = to_epoch_us(settings.logstore_since)
    return (logstore_source._replace(start_us=since_us), workflow_runs_source._replace(end_us=since_us))
