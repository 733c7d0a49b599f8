"""Validation of every request parameter before it can reach SQL.

Each failure is a `BadParameter` naming the parameter; the API turns it into Dify's 400 shape.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from app.days import from_epoch_us, to_epoch_us
from schemas.requests import TRIGGER_SOURCES, TriggerSource

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
_DIFY_MINUTE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}")


# Instants outside these are refused: no run is older, and local days are tabulated up to 2100.
EARLIEST_US = 0
LATEST_US = to_epoch_us(datetime(2100, 1, 1, tzinfo=UTC))


class BadParameter(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class CreatedRange(msgspec.Struct, frozen=True):
    """A created-time range in µs since the epoch: start inclusive, end exclusive."""

    start_us: int | None
    end_us: int | None

    @property
    def empty(self) -> bool:
        return self.start_us is not None and self.start_us == self.end_us


def uuid_param(name: str, value: str) -> str:
    """For ids litestar does not see (Grafana payloads); routes type theirs in app/routes/params.py."""
    if not _UUID.fullmatch(value):
        raise BadParameter(name, "must be a UUID")
    return value.lower()


def choice_param(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise BadParameter(name, f"must be one of: {', '.join(allowed)}")
    return value


def trigger_param(name: str, value: str) -> TriggerSource:
    return cast(TriggerSource, choice_param(name, value, TRIGGER_SOURCES))


def zone_param(name: str, value: str) -> str:
    if len(value) > 64 or not _ZONE.fullmatch(value):
        raise BadParameter(name, "must be an IANA time zone name such as Asia/Shanghai")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadParameter(name, f"unknown time zone {value!r}") from None
    return value


def localize_standard(naive: datetime, zone: str) -> datetime:
    """A naive local time as an aware one; in a DST gap or overlap, standard time wins, as pytz's
    `localize(is_dst=False)` does in Dify (New York 2025-11-02 01:30 -> 06:30 UTC)."""
    tz = ZoneInfo(zone)
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    for candidate in (first, second):
        if candidate.dst() == timedelta(0):
            return candidate
    return first


def instant_param(name: str, value: str, zone: str) -> int:
    """ISO-8601 date or date-time, or Dify's `YYYY-MM-DD HH:MM`, as µs since the epoch.
    Naive values are local times in `zone`."""
    text = value.strip()
    if len(text) > 40:
        raise BadParameter(name, "is too long for a date or date-time")
    try:
        if _DIFY_MINUTE.fullmatch(text):
            moment = datetime.strptime(text, "%Y-%m-%d %H:%M")
        elif len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise BadParameter(name, "must be an ISO-8601 date or date-time, or YYYY-MM-DD HH:MM") from None
    try:
        if moment.tzinfo is None:
            moment = localize_standard(moment, zone)
        instant_us = to_epoch_us(moment)
    except (OverflowError, ValueError):
        instant_us = None
    if instant_us is None or not EARLIEST_US <= instant_us <= LATEST_US:
        raise BadParameter(name, "must be between 1970-01-01 and 2100-01-01 (UTC)")
    return instant_us


def check_range(
    start_us: int, end_us: int, max_days: int, zone: str, start_name: str = "start", end_name: str = "end"
) -> None:
    """start <= end, and at most STATS_MAX_RANGE_DAYS local calendar days apart (a range across a
    DST change is an hour longer or shorter in UTC); errors name the parameters."""
    if start_us > end_us:
        raise BadParameter(start_name, f"must not be after {end_name}")
    tz = ZoneInfo(zone)
    local_start = from_epoch_us(start_us, tz).replace(tzinfo=None)
    local_end = from_epoch_us(end_us, tz).replace(tzinfo=None)
    if local_end - local_start > timedelta(days=max_days):
        raise BadParameter(end_name, f"the range is longer than {max_days} days")


def created_range(start: str | None, end: str | None, zone: str, max_days: int) -> CreatedRange:
    start_us = instant_param("start", start, zone) if start else None
    end_us = instant_param("end", end, zone) if end else None
    if start_us is not None and end_us is not None:
        check_range(start_us, end_us, max_days, zone)
    return CreatedRange(start_us=start_us, end_us=end_us)


_TIME_RANGE = re.compile(r"([0-9]{1,9})([dhms])")
_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def time_range_param(name: str, value: str, max_days: int) -> int:
    """Dify's `time_range` (`7d`, `12h`, `30m`, `90s`) in seconds, at most `max_days`."""
    found = _TIME_RANGE.fullmatch(value)
    if not found:
        raise BadParameter(name, "must be a number followed by d, h, m or s (e.g. 7d)")
    seconds = int(found.group(1)) * _SECONDS[found.group(2)]
    if seconds > max_days * 86_400:
        raise BadParameter(name, f"must be at most {max_days} days")
    return seconds
