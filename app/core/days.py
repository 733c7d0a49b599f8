"""Instants as integer µs since the epoch, and local calendar days, in Python.

The SQL does the same arithmetic on the engine (queries/timezones.py); this is the app's side:
parsing bounds, naming the days of an answer, cutting ranges into whole local days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DATE = date(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)


def to_epoch_us(moment: datetime) -> int:
    """An aware datetime as µs since the epoch, in integers (no float rounding)."""
    return (moment - EPOCH) // _ONE_US


def from_epoch_us(us: int, tz: tzinfo = UTC) -> datetime:
    return (EPOCH + us * _ONE_US).astimezone(tz)


def iso_to_epoch_us(text: str) -> int:
    """ISO-8601 text as the LogStore holds it (naive = UTC) to µs since the epoch."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_epoch_us(moment)


def day_number_to_date(day_number: int) -> date:
    """The SQL's local day number (days since 1970-01-01) as a date."""
    return EPOCH_DATE + timedelta(days=int(day_number))


def local_midnight_us(day: date, zone: str) -> int:
    """The instant `day` starts at in `zone` (a skipped midnight reads as the pre-change offset)."""
    return to_epoch_us(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)))


def touched_days(zone: str, start_us: int, end_us: int) -> list[date]:
    """Every local date in `zone` with an instant in [start_us, end_us); none for an empty range."""
    if end_us <= start_us:
        return []
    tz = ZoneInfo(zone)
    first, last = from_epoch_us(start_us, tz).date(), from_epoch_us(end_us - 1, tz).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
