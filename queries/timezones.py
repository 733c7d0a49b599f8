"""Local calendar days as integer arithmetic, identical in every dialect.

A run's day is the calendar day of its created time in the requested IANA zone. Rather than
trusting each engine's zone database and session zone, the builders turn the zone into the few
UTC offsets that apply over the queried range (a DST zone changes offset twice a year) and the SQL
evaluates `created_us + offset_us(created_us)` with a balanced CASE tree over those instants.
Integer division by one day then gives the local day number (days since 1970-01-01). This is
exact for any zone whose transitions fall on whole seconds, which tzdata's do since 1970.
The app turns day numbers back into dates (app/days.py).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND

# Without a bound, offsets are tabulated over this window; data outside it (before 1970 or after
# 2100) would be bucketed with the nearest tabulated offset.
DEFAULT_LOW_US = 0
DEFAULT_HIGH_US = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * US_PER_SECOND

# Shifts negative epochs before the integer division so it floors (SQL `/` truncates toward zero).
_DAY_SHIFT = 1_000_000


def offset_segments(zone: str, low_us: int | None, high_us: int | None) -> tuple[tuple[int, int], ...]:
    """`((starts_at_us, offset_us), ...)` covering [low, high); the first starts at -infinity (0 here).

    A slice of the zone's whole table (1970-2100), which is computed once per zone: computing it
    per range cost ~130 ms of CPU for an open-ended range, on the request loop, for every start."""
    table = _zone_table(zone)
    starts = [start for start, _ in table]
    low = DEFAULT_LOW_US if low_us is None else low_us
    high = DEFAULT_HIGH_US if high_us is None else high_us
    first = max(bisect_right(starts, low) - 1, 0)
    last = bisect_left(starts, high + 2 * 86_400 * US_PER_SECOND)
    return ((0, table[first][1]), *table[first + 1 : max(last, first + 1)])


@lru_cache(maxsize=1024)  # about 600 IANA zones, a few hundred segments each
def _zone_table(zone: str) -> tuple[tuple[int, int], ...]:
    tz = ZoneInfo(zone)

    def offset_at(epoch_s: int) -> int:
        delta = datetime.fromtimestamp(epoch_s, tz=tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    first = DEFAULT_LOW_US // US_PER_SECOND
    segments: list[tuple[int, int]] = [(0, offset_at(first) * US_PER_SECOND)]
    previous_s, previous_offset = first, offset_at(first)
    # Samples every 12 hours; no zone changes offset twice within that.
    for sample_s in range(first + 43_200, DEFAULT_HIGH_US // US_PER_SECOND + 86_400, 43_200):
        offset = offset_at(sample_s)
        if offset == previous_offset:
            previous_s = sample_s
            continue
        lo, hi = previous_s, sample_s  # offset_at(lo) == previous, offset_at(hi) == new
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if offset_at(mid) == previous_offset else (lo, mid)
        segments.append((hi * US_PER_SECOND, offset * US_PER_SECOND))
        previous_s, previous_offset = sample_s, offset
    return tuple(segments)


def offset_case(column: str, segments: tuple[tuple[int, int], ...]) -> str:
    """A balanced CASE tree giving the zone's UTC offset (µs) at `column` (epoch µs)."""
    if len(segments) == 1:
        return str(int(segments[0][1]))
    middle = len(segments) // 2
    pivot = int(segments[middle][0])
    before = offset_case(column, segments[:middle])
    after = offset_case(column, segments[middle:])
    return f"CASE WHEN {column} < {pivot} THEN {before} ELSE {after} END"


def local_day_sql(column: str, segments: tuple[tuple[int, int], ...]) -> str:
    """SQL for the local day number (days since 1970-01-01) of `column` (epoch µs)."""
    shift = _DAY_SHIFT * US_PER_DAY
    return f"(({column} + {offset_case(column, segments)} + {shift}) / {US_PER_DAY} - {_DAY_SHIFT})"
