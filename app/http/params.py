"""Validation of every request parameter before it can reach SQL.

Each failure is a `BadParameter` naming the parameter; the API turns it into Dify's 400 shape.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo, available_timezones

import msgspec

from app.core.days import from_epoch_us, to_epoch_us
from schemas.requests import STATUSES, TRIGGER_SOURCES, TriggerSource

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
# A date-time whose offset's `+` arrived as a space: an unencoded `+` in a URL query is a space.
_PLUS_AS_SPACE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+ [0-9]{2}(:?[0-9]{2})?")
_OUT_OF_RANGE = ("year ", "month ", "day ", "hour ", "minute ", "second ")  # Python's own messages

MUST_BE_UUID = "must be a UUID (32 hexadecimal digits in groups of 8-4-4-4-12, with the dashes)"
MUST_BE_TIME_RANGE = "must be a number followed by d, h, m or s (e.g. 7d)"
MUST_BE_LIMIT = "must be a whole number from 1 to 100"


def one_of(allowed: tuple[str, ...]) -> str:
    return f"must be one of: {', '.join(allowed)}"


# What each parameter that litestar checks must be, in the words of the checks below: litestar's
# own messages ("Invalid enum value 'app_run'", "Expected `str` of length >= 36") do not say.
PARAMETER_RULES = {
    **dict.fromkeys(("tenant_id", "app_id", "run_id", "last_id"), MUST_BE_UUID),
    "triggered_from": one_of(TRIGGER_SOURCES),
    "status": one_of(STATUSES),
    "time_range": MUST_BE_TIME_RANGE,
    "limit": MUST_BE_LIMIT,
}


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
    """For ids litestar does not see (Grafana payloads); routes type theirs in app/http/routes/params.py."""
    if not _UUID.fullmatch(value):
        raise BadParameter(name, MUST_BE_UUID)
    return value.lower()


def choice_param(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise BadParameter(name, one_of(allowed))
    return value


def trigger_param(name: str, value: str) -> TriggerSource:
    return cast(TriggerSource, choice_param(name, value, TRIGGER_SOURCES))


def zone_param(name: str, value: str) -> str:
    if len(value) > 64 or not _ZONE.fullmatch(value):
        raise BadParameter(name, "must be an IANA time zone name such as Asia/Shanghai")
    if value not in ZONE_NAMES:
        other = ZONE_NAMES_BY_LOWER_CASE.get(value.lower())
        hint = f"; names are case-sensitive: did you mean {other!r}?" if other else ""
        raise BadParameter(name, f"unknown time zone {value!r}{hint}")
    return value


def _zone_names() -> frozenset[str]:
    """The IANA zone names zoneinfo can load here (TZPATH and the tzdata package), read once.
    Not `localtime` (the host's own zone: it differs between replicas that share cache keys, and
    would tell a caller the host's zone), `Factory` (no zone at all), `posixrules`, nor the
    `posix/` and `right/` copies of the database (`right/` counts leap seconds)."""
    return frozenset(
        zone
        for zone in available_timezones()
        if zone not in ("localtime", "Factory", "posixrules") and not zone.startswith(("posix/", "right/"))
    )


ZONE_NAMES = _zone_names()
ZONE_NAMES_BY_LOWER_CASE = {zone.lower(): zone for zone in ZONE_NAMES}  # asia/shanghai: Asia/Shanghai


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
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:  # ISO-8601 date-times, and Dify's YYYY-MM-DD HH:MM (a space for the T)
            moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as error:
        raise BadParameter(name, _date_problem(text, str(error))) from None
    try:
        if moment.tzinfo is None:
            moment = localize_standard(moment, zone)
        instant_us = to_epoch_us(moment)
    except (OverflowError, ValueError):
        instant_us = None
    if instant_us is None or not EARLIEST_US <= instant_us <= LATEST_US:
        raise BadParameter(name, "must be between 1970-01-01 and 2100-01-01 (UTC)")
    return instant_us


def _date_problem(text: str, reason: str) -> str:
    """Which part of a date is wrong when that is known (Python names it: `month must be in
    1..12`), else the forms accepted."""
    if reason.startswith(_OUT_OF_RANGE):
        return f"{text!r} is not a valid {'date' if len(text) == 10 else 'date-time'}: {reason}"
    if _PLUS_AS_SPACE.fullmatch(text):
        return (
            "its UTC offset lost its '+' (a '+' in a URL query means a space): "
            "write it as %2B, e.g. 2025-03-01T08:00:00%2B08:00"
        )
    return "must be an ISO-8601 date or date-time, or YYYY-MM-DD HH:MM"


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
        raise BadParameter(name, MUST_BE_TIME_RANGE)
    seconds = int(found.group(1)) * _SECONDS[found.group(2)]
    if seconds > max_days * 86_400:
        raise BadParameter(name, f"must be at most {max_days} days")
    return seconds
