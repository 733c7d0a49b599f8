"""Where a time zone may change its UTC offset, read from the zone's own TZif file.

zoneinfo answers "what is the offset at this instant" but does not list a zone's transitions, and
finding them by sampling costs thousands of conversions per zone. The TZif file zoneinfo reads
lists them (RFC 8536): explicit transition instants, then a POSIX TZ rule (the footer) for every
instant after the last one. This module turns both into *candidate* instants, a superset of the
zone's real transitions; queries/timezones.py asks zoneinfo for the offset at each candidate, so
offsets are always zoneinfo's own and a candidate where nothing changes costs nothing.

A rule transition that does not change zoneinfo's offset means the rule was misread (or the
rule is of a form not handled here): the years it covers are then sampled every 12 hours.
"""

from __future__ import annotations

import re
import struct
import zoneinfo
from bisect import bisect_left, bisect_right
from calendar import isleap, monthrange
from contextlib import suppress
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import NamedTuple

SAMPLE_S = 43_200  # no zone changes its offset twice within 12 hours
_HEADER = struct.Struct(">4sc15x6l")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# POSIX TZ: std offset [dst [offset] [,start[/time],end[/time]]], names plain or <quoted>.
_NAME = r"(?:<[A-Za-z0-9+-]+>|[A-Za-z]+)"
_CLOCK = r"[+-]?[0-9]{1,3}(?::[0-9]{1,2}){0,2}"
_DAY = r"(?:J[0-9]{1,3}|[0-9]{1,3}|M[0-9]{1,2}\.[0-9]\.[0-9])"
_POSIX_TZ = re.compile(
    rf"(?P<std>{_NAME})(?P<std_offset>{_CLOCK})"
    rf"(?:(?P<dst>{_NAME})(?P<dst_offset>{_CLOCK})?"
    rf",(?P<start>{_DAY})(?:/(?P<start_time>{_CLOCK}))?,(?P<end>{_DAY})(?:/(?P<end_time>{_CLOCK}))?)?"
)


class ZoneTransitions(NamedTuple):
    explicit: tuple[int, ...]  # transition instants listed in the file, epoch seconds, ascending
    rule: PosixRule | None  # the footer's rule for every instant after the last one; None: fixed


class PosixRule(NamedTuple):
    """A POSIX TZ rule with daylight saving: when, each year, it starts and ends."""

    std_offset_s: int  # UTC offset in standard time (east positive)
    dst_offset_s: int
    start: str  # Jn, n or Mm.w.d
    start_time_s: int  # local standard time of day (may be negative or past 24 h)
    end: str
    end_time_s: int  # local daylight time of day

    def transitions(self, year: int) -> tuple[int, int]:
        """(start, end) of daylight saving in `year`, epoch seconds."""
        start = _day_of(self.start, year) * 86_400 + self.start_time_s - self.std_offset_s
        end = _day_of(self.end, year) * 86_400 + self.end_time_s - self.dst_offset_s
        return start, end


@lru_cache(maxsize=1024)  # about 600 IANA zones; a few kB each
def zone_transitions(zone: str) -> ZoneTransitions:
    """The zone's TZif data as zoneinfo finds it (TZPATH, then the tzdata package)."""
    zoneinfo.ZoneInfo(zone)  # refuses names that are not zones (and paths) before a file is opened
    explicit, footer = parse_tzif(_tzif_bytes(zone))
    return ZoneTransitions(explicit, parse_posix_rule(footer))


def candidates(zone: str, low_s: int, high_s: int) -> list[int]:
    """Ascending instants in (low_s, high_s) that include every change of the zone's offset."""
    explicit, rule = zone_transitions(zone)
    listed = list(explicit[bisect_right(explicit, low_s) : bisect_left(explicit, high_s)])
    after = max(low_s, explicit[-1]) if explicit else low_s
    if rule is None or after >= high_s:
        return listed
    ruled = {
        instant
        for year in range(_year(after) - 1, _year(high_s) + 2)
        for instant in _rule_year(zone, year)
        if after < instant < high_s
    }
    return listed + sorted(ruled)


def offset_s(tz: zoneinfo.ZoneInfo, instant_s: int) -> int:
    delta = datetime.fromtimestamp(instant_s, tz=tz).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


@lru_cache(maxsize=16_384)
def _rule_year(zone: str, year: int) -> tuple[int, ...]:
    """The footer rule's transitions in `year` that fall after the file's last listed one, each
    checked against zoneinfo; when one is not a change of offset, the year is sampled instead."""
    explicit, rule = zone_transitions(zone)
    assert rule is not None
    last = explicit[-1] if explicit else None
    found = tuple(instant for instant in rule.transitions(year) if last is None or instant > last)
    tz = zoneinfo.ZoneInfo(zone)
    if all(offset_s(tz, instant - 1) != offset_s(tz, instant) for instant in found):
        return found
    low = _year_start(year) if last is None else max(_year_start(year), last)
    return tuple(sampled(tz, low, _year_start(year + 1) + 2 * 86_400))


def sampled(tz: zoneinfo.ZoneInfo, low_s: int, high_s: int) -> list[int]:
    """Every change of offset in (low_s, high_s), found by sampling and bisection."""
    changes = []
    previous_s, previous = low_s, offset_s(tz, low_s)
    for sample_s in [*range(low_s + SAMPLE_S, high_s, SAMPLE_S), high_s]:
        offset = offset_s(tz, sample_s)
        if offset != previous:
            lo, hi = previous_s, sample_s  # offset at lo is the previous one, at hi the new one
            while hi - lo > 1:
                middle = (lo + hi) // 2
                lo, hi = (middle, hi) if offset_s(tz, middle) == previous else (lo, middle)
            changes.append(hi)
        previous_s, previous = sample_s, offset
    return [instant for instant in changes if instant < high_s]


def parse_tzif(data: bytes) -> tuple[tuple[int, ...], str]:
    """(transition instants, footer TZ string) of a TZif file, version 1 to 4 (RFC 8536)."""
    magic, version, *counts = _HEADER.unpack_from(data)
    if magic != b"TZif":
        raise ValueError("not a TZif file")
    if version == b"\0":  # version 1: 32-bit instants, no footer
        return struct.unpack_from(f">{counts[3]}l", data, _HEADER.size), ""
    second = _HEADER.size + _block_size(counts, 4)
    _, _, *counts = _HEADER.unpack_from(data, second)
    instants = struct.unpack_from(f">{counts[3]}q", data, second + _HEADER.size)
    footer = data[second + _HEADER.size + _block_size(counts, 8) :]
    return instants, footer.strip(b"\n").decode("ascii", "replace")


def _block_size(counts: list[int], time_size: int) -> int:
    isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt = counts
    return timecnt * (time_size + 1) + typecnt * 6 + charcnt + leapcnt * (time_size + 4) + isstdcnt + isutcnt


def parse_posix_rule(text: str) -> PosixRule | None:
    """The daylight-saving rule of a POSIX TZ string; None for a fixed offset (or no footer)."""
    found = _POSIX_TZ.fullmatch(text)
    if found is None or found["dst"] is None:
        return None
    std = -_seconds(found["std_offset"])
    dst = -_seconds(found["dst_offset"]) if found["dst_offset"] else std + 3600
    return PosixRule(
        std_offset_s=std,
        dst_offset_s=dst,
        start=found["start"],
        start_time_s=_seconds(found["start_time"] or "2"),
        end=found["end"],
        end_time_s=_seconds(found["end_time"] or "2"),
    )


def _seconds(clock: str) -> int:
    sign = -1 if clock.startswith("-") else 1
    parts = [int(part) for part in clock.lstrip("+-").split(":")]
    hours, minutes, seconds = (*parts, 0, 0)[:3]
    return sign * (hours * 3600 + minutes * 60 + seconds)


def _day_of(spec: str, year: int) -> int:
    """Days since 1970-01-01 of a POSIX date in `year`: Jn (1-365, no Feb 29), n (0-365),
    Mm.w.d (weekday d, 0 = Sunday, of week w, 5 = the last, of month m)."""
    first = date(year, 1, 1).toordinal() - _EPOCH_ORDINAL
    if spec.startswith("J"):
        day = int(spec[1:])
        return first + day - 1 + (1 if isleap(year) and day >= 60 else 0)
    if not spec.startswith("M"):
        return first + int(spec)
    month, week, weekday = (int(part) for part in spec[1:].split("."))
    first_weekday, days = monthrange(year, month)  # Monday = 0
    day = 1 + (weekday - (first_weekday + 1) % 7) % 7 + 7 * (week - 1)
    while day > days:
        day -= 7
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL


def _year(instant_s: int) -> int:
    return datetime.fromtimestamp(min(max(instant_s, 0), 253_402_300_799), tz=UTC).year


def _year_start(year: int) -> int:
    return (date(year, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400


def zone_roots() -> list[Traversable]:
    """Where zoneinfo looks for zone files, in its order: TZPATH, then the tzdata package."""
    roots: list[Traversable] = [Path(root) for root in zoneinfo.TZPATH]
    with suppress(ModuleNotFoundError):
        roots.append(resources.files("tzdata").joinpath("zoneinfo"))
    return roots


def _tzif_bytes(zone: str) -> bytes:
    for root in zone_roots():
        found = root.joinpath(*zone.split("/"))
        if found.is_file():
            return found.read_bytes()
    raise zoneinfo.ZoneInfoNotFoundError(zone)
