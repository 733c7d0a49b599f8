"""Local calendar days as integer arithmetic, identical in every dialect.

A run's day is the calendar day of its created time in the requested IANA zone. Rather than
trusting each engine's zone database and session zone, the builders turn the zone into the few
UTC offsets that apply over the queried range (a DST zone changes offset twice a year; an open
end stops at the read's instant plus the slack, scope.RunScope.created_span) and the SQL
evaluates `created_us + offset_us(created_us)` with a balanced CASE tree over those instants.
Integer division by one day then gives the local day number (days since 1970-01-01). This is
exact for any zone whose transitions fall on whole seconds, which tzdata's do since 1970.
The app turns day numbers back into dates (app/core/days.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from queries.tzif import candidates, offset_s

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND

# Without a bound (and no read instant, see scope.RunScope.created_span), offsets are tabulated over
# this window;
# data outside it (before 1970 or after 2100) would be bucketed with the nearest tabulated offset.
DEFAULT_LOW_US = 0
DEFAULT_HIGH_US = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * US_PER_SECOND

# Shifts negative epochs before the integer division so it floors (SQL `/` truncates toward zero).
_DAY_SHIFT = 1_000_000


def offset_segments(zone: str, low_us: int | None, high_us: int | None) -> tuple[tuple[int, int], ...]:
    """`((starts_at_us, offset_us), ...)` covering [low, high); the first starts at -infinity (0 here).

    Only the zone's transitions inside the range are looked at (queries/tzif.py lists them from
    the zone's file), so a first request in a zone costs a few conversions, not a table of the
    zone from 1970 to 2100, and the SQL carries only the offsets of the range."""
    tz = ZoneInfo(zone)
    low_s = (DEFAULT_LOW_US if low_us is None else low_us) // US_PER_SECOND
    high_s = -(-(DEFAULT_HIGH_US if high_us is None else high_us) // US_PER_SECOND)
    segments = [(0, offset_s(tz, low_s) * US_PER_SECOND)]
    for instant_s in candidates(zone, low_s, high_s):
        offset = offset_s(tz, instant_s) * US_PER_SECOND
        if offset != segments[-1][1]:
            segments.append((instant_s * US_PER_SECOND, offset))
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
