"""Plan a daily range: which of its parts are settled whole days, edges, live days or plain reads.

A day is *settled* once it ended more than STATS_SETTLE_AFTER ago: its runs rarely change, so its
aggregates are kept and validated (app/core/settled.py). Days since then are *live*: their runs
are kept one by one and refreshed with the versions written since the last read
(app/core/live.py). A range that starts or ends inside a settled day has an *edge*: part of one
day, answered from that day's runs, kept like live ones. What none of these can answer is read:
a day whose midnight is ambiguous in its zone (an offset change across midnight lets instants on
either side belong to either day), and anything the sources cannot keep run by run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import msgspec

from app.core.days import EPOCH_DATE, from_epoch_us, local_midnight_us, touched_days


class DaySpan(msgspec.Struct, frozen=True):
    """One local calendar day as a [start_us, end_us) instant range."""

    day: date
    start_us: int
    end_us: int

    @property
    def number(self) -> int:
        """Days since 1970-01-01: how the SQL names a local day."""
        return (self.day - EPOCH_DATE).days


class Edge(msgspec.Struct, frozen=True):
    """[low_us, high_us): part of one settled day (`span`), at a range's start or end."""

    low_us: int
    high_us: int
    span: DaySpan


class RangePlan(msgspec.Struct, frozen=True):
    days: tuple[DaySpan, ...]  # whole settled days, ascending
    edges: tuple[Edge, ...]
    live_from_us: int | None  # where the live state begins (the range's live part is from it on); None: none
    reads: tuple[tuple[int, int], ...]  # [low, high) answered by a plain read, ascending


@lru_cache(maxsize=65_536)
def unambiguous_midnight_us(day: date, zone: str) -> int | None:
    """The instant `day` starts at in `zone`, or None when the zone changes offset across that
    midnight so that instants on either side may belong to either day."""
    tz = ZoneInfo(zone)
    instant = local_midnight_us(day, zone)
    before, after = from_epoch_us(instant - 1, tz).date(), from_epoch_us(instant, tz).date()
    return instant if (before, after) == (day - timedelta(days=1), day) else None


def day_span(day: date, zone: str) -> DaySpan | None:
    """The day as an instant range, when both its midnights are unambiguous."""
    start = unambiguous_midnight_us(day, zone)
    end = unambiguous_midnight_us(day + timedelta(days=1), zone)
    return None if start is None or end is None else DaySpan(day, start, end)


def settled_before_us(zone: str, now_s: float, settle_after_s: float) -> int:
    """The midnight where unsettled days begin: the day holding now - STATS_SETTLE_AFTER."""
    day = from_epoch_us(int((now_s - settle_after_s) * 1_000_000), ZoneInfo(zone)).date()
    return local_midnight_us(day, zone)


def plan_range(
    zone: str,
    start_us: int,
    end_us: int,
    settled_before: int,
    keep_live: bool,
    keeps_runs: Callable[[int, int | None], bool],
) -> RangePlan:
    """The parts of [start_us, end_us). `settled_before`: where unsettled days begin;
    `keep_live`: whether live days may be kept run by run; `keeps_runs(since, until)`: whether
    the sources can keep the runs created in [since, until) one by one (one LogStore on the
    shortcut plan)."""
    settled_end = min(end_us, max(start_us, settled_before))
    live_ok = (
        keep_live
        and settled_end < end_us
        and unambiguous_midnight_us(from_epoch_us(settled_before, ZoneInfo(zone)).date(), zone)
        == settled_before
        and keeps_runs(settled_before, None)
    )
    days: list[DaySpan] = []
    edges: list[Edge] = []
    for day in touched_days(zone, start_us, settled_end):
        span = day_span(day, zone)
        if span is None:
            continue  # a day with an ambiguous midnight is read with its neighbours' gap
        low, high = max(start_us, span.start_us), min(settled_end, span.end_us)
        if (low, high) == (span.start_us, span.end_us):
            days.append(span)
        elif low < high and keeps_runs(span.start_us, span.end_us):
            edges.append(Edge(low, high, span))
    covered = sorted(
        [*((span.start_us, span.end_us) for span in days), *((e.low_us, e.high_us) for e in edges)]
    )
    reads = gaps(start_us, settled_end, covered)
    if settled_end < end_us and not live_ok:
        reads = [*reads, (settled_end, end_us)]  # unsettled days nothing keeps: read each time
    live = settled_before if live_ok else None
    return RangePlan(tuple(days), tuple(edges), live, tuple(_touching_joined(reads)))


def _touching_joined(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in segments:
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def gaps(start_us: int, end_us: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [start_us, end_us) outside the (ascending, disjoint) `covered` segments."""
    found = []
    position = start_us
    for low, high in covered:
        if position < low:
            found.append((position, low))
        position = max(position, high)
    if position < end_us:
        found.append((position, end_us))
    return found
