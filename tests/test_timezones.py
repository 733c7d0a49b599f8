"""Local-day offsets (queries/timezones.py, queries/tzif.py): exactly zoneinfo's, from only the
transitions a range touches, and an open range's SQL carries only the offsets of its own span."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo, available_timezones

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from queries import daily, run_rows, timezones, tzif
from queries.scope import RunScope
from tests.examples import A, T

ALL_ZONES = sorted(available_timezones())
YEAR_2100_S = 4_102_444_800
# Negative DST (Dublin), a 30-minute DST (Lord Howe), a 2-hour DST (Troll), rule times of -1 h,
# 24 h and 50 h (Nuuk, Santiago, Gaza), Ramadan changes listed to 2087 (Casablanca), +05:45.
TRICKY_ZONES = (
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "Antarctica/Troll",
    "America/Nuuk",
    "America/Santiago",
    "Asia/Gaza",
    "Africa/Casablanca",
    "Asia/Kathmandu",
)
US = 1_000_000


def zoneinfo_offset_us(zone: str, instant_us: int) -> int:
    delta = datetime.fromtimestamp(instant_us // US, tz=ZoneInfo(zone)).utcoffset()
    assert delta is not None
    return int(delta.total_seconds()) * US


def segment_offset_us(segments: tuple[tuple[int, int], ...], instant_us: int) -> int:
    """What the SQL's CASE tree gives at `instant_us`."""
    return segments[max(bisect_right([start for start, _ in segments], instant_us) - 1, 0)][1]


def sampled_table(zone: str, low_s: int, high_s: int) -> list[tuple[int, int]]:
    """An independent reference: the zone's offsets sampled every 12 hours, each change bisected
    to the second (no zone changes its offset twice within 12 hours)."""
    tz = ZoneInfo(zone)

    def offset(instant_s: int) -> int:
        return int(datetime.fromtimestamp(instant_s, tz=tz).utcoffset().total_seconds())  # type: ignore[union-attr]

    table = [(0, offset(low_s) * US)]
    previous_s = low_s
    for sample_s in range(low_s + 43_200, high_s, 43_200):
        if offset(sample_s) != table[-1][1] // US:
            lo, hi = previous_s, sample_s
            while hi - lo > 1:
                middle = (lo + hi) // 2
                lo, hi = (middle, hi) if offset(middle) == table[-1][1] // US else (lo, middle)
            table.append((hi * US, offset(hi) * US))
        previous_s = sample_s
    return table


@given(
    zone=st.sampled_from(ALL_ZONES),
    bounds=st.lists(st.integers(0, YEAR_2100_S * US - 1), min_size=3, max_size=3),
    open_start=st.booleans(),
    open_end=st.booleans(),
)
def test_offsets_are_zoneinfos_over_any_range_of_any_zone(
    zone: str, bounds: list[int], open_start: bool, open_end: bool
) -> None:
    low, instant, high = sorted(bounds)
    segments = timezones.offset_segments(zone, None if open_start else low, None if open_end else high + 1)
    assert segment_offset_us(segments, instant) == zoneinfo_offset_us(zone, instant)
    assert all(one[1] != after[1] for one, after in pairwise(segments))


@pytest.mark.parametrize("zone", TRICKY_ZONES)
def test_every_transition_from_1970_to_2100_is_found_to_the_second(zone: str) -> None:
    """Past 2037 (where the files stop listing transitions) only the file's POSIX rule tells them."""
    assert list(timezones.offset_segments(zone, None, None)) == sampled_table(zone, 0, YEAR_2100_S)


def _as_slim(zone_transitions: tzif.ZoneTransitions) -> tzif.ZoneTransitions:
    """A zone's data as a "slim" file holds it: the trailing transitions its rule gives unlisted."""
    explicit, rule = zone_transitions
    assert rule is not None
    cut = len(explicit)
    while cut and explicit[cut - 1] in rule.transitions(_year(explicit[cut - 1])):
        cut -= 1
    return tzif.ZoneTransitions(explicit[:cut], rule)


def _year(instant_s: int) -> int:
    return datetime.fromtimestamp(instant_s, tz=UTC).year


def test_posix_rules_give_the_transitions_the_files_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read as "slim" files (which stop listing where the rule takes over, 2007 for New York),
    every zone with a rule gets its later transitions from the rule exactly as its full file lists
    them: the rule reader handles every form tzdata uses."""
    ruled = [zone for zone in ALL_ZONES if tzif.zone_transitions(zone).rule is not None]
    assert len(ruled) > 100
    low_us, high_us = 0, 2_145_916_800 * US  # 1970 to 2038
    listed = {zone: timezones.offset_segments(zone, low_us, high_us) for zone in ruled}
    real = tzif.zone_transitions
    monkeypatch.setattr(tzif, "zone_transitions", lambda zone: _as_slim(real(zone)))
    assert tzif.zone_transitions("America/New_York").explicit[-1] == 1_162_101_600  # 2006-10-29 06:00 UTC
    tzif._rule_year.cache_clear()
    try:
        for zone in ruled:
            assert timezones.offset_segments(zone, low_us, high_us) == listed[zone], zone
    finally:
        tzif._rule_year.cache_clear()


def test_a_rule_that_does_not_fit_is_sampled_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule transition where zoneinfo's offset does not change means the rule was misread: the
    year is sampled, and the offsets are still exact."""
    zone, low_us, high_us = "America/New_York", 1_230_768_000 * US, 1_420_070_400 * US  # 2009-2015
    listed = timezones.offset_segments(zone, low_us, high_us)
    explicit, _ = tzif.zone_transitions(zone)
    before_2007 = tzif.parse_posix_rule("EST5EDT,M4.1.0,M10.5.0")  # the wrong rule for those years
    cut = tuple(instant for instant in explicit if instant < low_us // US)
    monkeypatch.setattr(tzif, "zone_transitions", lambda _: tzif.ZoneTransitions(cut, before_2007))
    tzif._rule_year.cache_clear()
    try:
        assert timezones.offset_segments(zone, low_us, high_us) == listed
        assert len(listed) == 13
    finally:
        tzif._rule_year.cache_clear()


def test_posix_rule_forms() -> None:
    new_york = tzif.parse_posix_rule("EST5EDT,M3.2.0,M11.1.0")
    assert new_york is not None
    assert new_york.transitions(2025) == (
        int(datetime(2025, 3, 9, 7, tzinfo=UTC).timestamp()),
        int(datetime(2025, 11, 2, 6, tzinfo=UTC).timestamp()),
    )
    lord_howe = tzif.parse_posix_rule("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0")
    assert lord_howe is not None and (lord_howe.std_offset_s, lord_howe.dst_offset_s) == (37_800, 39_600)
    # J60 is March 1 in every year; a zero-based 59 is Feb 29 in a leap year; times may be negative.
    julian = tzif.parse_posix_rule("XST3XDT,J60/0,59/-1")
    assert julian is not None
    assert julian.transitions(2024) == (
        int(datetime(2024, 3, 1, 3, tzinfo=UTC).timestamp()),  # 00:00 at UTC-3
        int(datetime(2024, 2, 29, 1, tzinfo=UTC).timestamp()),  # Feb 28 23:00 at UTC-2
    )
    assert tzif.parse_posix_rule("IST-5:30") is None
    assert tzif.parse_posix_rule("<+0545>-5:45") is None


def test_a_first_range_in_a_zone_looks_at_its_own_transitions_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tabulating Paris from 1970 to 2100 on its first request took ~95,000 conversions (~100-300
    ms on the request loop); a week now takes a handful."""
    conversions = 0
    real = tzif.offset_s

    def counted(tz: ZoneInfo, instant_s: int) -> int:
        nonlocal conversions
        conversions += 1
        return real(tz, instant_s)

    monkeypatch.setattr(tzif, "offset_s", counted)
    monkeypatch.setattr(timezones, "offset_s", counted)
    week = (1_774_396_800 * US, 1_775_001_600 * US)  # 2026-03-25 .. 04-01, Paris springs forward
    segments = timezones.offset_segments("Europe/Paris", *week)
    assert [offset // 3600 // US for _, offset in segments] == [1, 2]
    assert conversions < 20


def _case_count(sql: str) -> int:
    return sql.count("CASE WHEN created_us <")


def test_an_open_end_carries_only_the_offsets_up_to_the_read() -> None:
    """A range without an end (and a kept live state) used to carry every transition to 2100:
    ~250 CASE nodes, 11 kB per statement. It stops at the read's instant plus the slack."""
    june = 1_780_272_000  # 2026-06-01
    scope = RunScope(
        tenant_id=T, app_id=A, triggered_from="app-run", start_us=june * US, read_at_s=june + 86_400
    )
    assert _case_count(daily.daily(scope, "Europe/Paris", daily.DailyAggregates("count(*) AS runs")).sql) == 0
    assert _case_count(run_rows.run_rows(scope, "Europe/Paris").sql) == 0
    # Read half an hour before Paris falls back (2026-10-25 01:00 UTC): the slack reaches past it.
    autumn = msgspec.structs.replace(scope, read_at_s=1_792_888_200)
    assert _case_count(run_rows.run_rows(autumn, "Europe/Paris").sql) == 1
    # An open start reads the whole history: its statement carries that history's transitions.
    history = msgspec.structs.replace(scope, start_us=None, end_us=june * US)
    assert 100 < _case_count(run_rows.run_rows(history, "Europe/Paris").sql) < 200
