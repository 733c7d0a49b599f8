"""Hypothesis strategies for adversarial version histories that keep the writer's invariants
(queries/README.md).

Runs are created at or around local midnights of DST-change days in zones with DST, half- and
quarter-hour offsets; their versions include paused/resumed cycles, duplicate finished versions
with different tokens, durations and finish times (and retries tying on everything but their
duration), re-sent identical rows, rows arriving out of log_version order, created times written
with and without fractions and offsets, and empty created_at (older writers). Durations are
elapsed_time or, when it is None, finished_at - started_at; they repeat (ties within a day), sit
on half microseconds (rounding), run backwards (clock skew) or cannot be known (NaN, 1e13 s).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from tests.reference import Version, created_us, iso_to_us, latest_versions

ZONES = (
    "UTC",
    "Asia/Shanghai",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Adelaide",
    "Asia/Kathmandu",
    "Europe/London",
)
DATES = (
    date(2025, 3, 9),  # New York springs forward (23-hour day)
    date(2025, 3, 10),
    date(2025, 3, 30),  # London springs forward
    date(2025, 3, 31),
    date(2025, 4, 6),  # Adelaide falls back (25-hour day)
    date(2025, 4, 7),
    date(2025, 10, 5),  # Adelaide springs forward
    date(2025, 10, 6),
    date(2025, 11, 2),  # New York falls back (25-hour day)
    date(2025, 11, 3),
)
TENANT_A = "0a000000-0000-4000-8000-00000000000a"
TENANT_B = "0b000000-0000-4000-8000-00000000000b"
APP_1 = "a1000000-0000-4000-8000-0000000000a1"
APP_2 = "a2000000-0000-4000-8000-0000000000a2"
# The same app id under two tenants: isolation must hold on both filters.
APPS = ((TENANT_A, APP_1), (TENANT_A, APP_2), (TENANT_B, APP_1))
TRIGGERS = ("app-run", "debugging", "webhook")
# Users on either side of the split points of a long read in parts (app/stores/repository.user_parts).
USERS = tuple(f"{lead}e000000-0000-4000-8000-00000000000{n}" for n, lead in enumerate("e3a8"))
FINISHED = ("succeeded", "failed", "stopped", "partial-succeeded")
UNFINISHED = ("running", "paused")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _local_midnight_us(day: date, zone: str) -> int:
    moment = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


ANCHORS_US = sorted({_local_midnight_us(day, zone) for day in DATES for zone in ZONES})
ZONE_ANCHORS_US = {zone: sorted({_local_midnight_us(day, zone) for day in DATES}) for zone in ZONES}
_DELTAS_US = (0, 1, -1, 1_000, -1_000_000, 1_000_000, 3_600_000_000, -3_600_000_000)


@st.composite
def instants(draw: st.DrawFn, zone: str | None = None) -> int:
    """An epoch µs at, just around, or within a day of a local midnight (mostly of `zone`)."""
    near_zone = zone is not None and draw(st.integers(0, 4)) > 0
    anchor = draw(st.sampled_from(ZONE_ANCHORS_US[zone] if near_zone and zone else ANCHORS_US))
    delta = draw(st.one_of(st.sampled_from(_DELTAS_US), st.integers(-86_400_000_000, 86_400_000_000)))
    return anchor + delta


def _iso(us: int, style: str) -> str:
    moment = _EPOCH + timedelta(microseconds=us)
    if style == "naive":  # Python's isoformat drops a zero fraction, as Dify's writer does
        return moment.replace(tzinfo=None).isoformat()
    if style == "millis":
        return moment.replace(tzinfo=None).isoformat(timespec="milliseconds")
    if style == "zulu":
        return moment.replace(tzinfo=None).isoformat() + "Z"
    offset = ZoneInfo("Asia/Shanghai") if style == "plus8" else ZoneInfo("America/New_York")
    return moment.astimezone(offset).isoformat()


_STYLES = ("naive", "naive", "naive", "millis", "zulu", "plus8", "minus")
ELAPSED = (
    st.none()
    | st.floats(0, 600, allow_nan=False)
    | st.sampled_from((0.0, 1.0, 2.5, 2.5e-06, 0.1234565, 599.9999995))  # shared values; half µs
    | st.sampled_from((-1.0, 1e13, math.nan))  # a clock gone backwards; durations not known
)


@st.composite
def run_versions(draw: st.DrawFn, run_id: str, created_pool: list[int], zone: str | None) -> list[Version]:
    tenant_id, app_id = draw(st.sampled_from(APPS))
    reuse = created_pool and draw(st.integers(0, 3)) == 0  # runs sharing one created time
    created = draw(st.sampled_from(created_pool)) if reuse else draw(instants(zone))
    created_pool.append(created)
    style = draw(st.sampled_from(_STYLES))
    if style == "millis":
        created -= created % 1000
    created_text = _iso(created, style)
    assert iso_to_us(created_text) == created
    older_writer = draw(st.integers(0, 5)) == 0
    started_text = _iso(created + (0 if older_writer else draw(st.integers(0, 2_000_000))), style)
    final = draw(st.sampled_from(FINISHED + UNFINISHED))
    pauses = draw(st.integers(0, 2))
    statuses = ["running"]
    for _ in range(pauses):
        statuses += ["paused", "running"]
    if final == "paused":
        statuses.append("paused")
    elif final in FINISHED:
        statuses += [final] * draw(st.integers(1, 3))  # retries: duplicate finished versions
    finished_text = _iso(created + draw(st.integers(1, 600_000_000)), "naive") if final in FINISHED else ""
    common = {
        "id": run_id,
        "tenant_id": tenant_id,
        "app_id": app_id,
        "workflow_id": app_id,
        "triggered_from": draw(st.sampled_from(TRIGGERS[:1] * 3 + TRIGGERS)),
        "type": "workflow",
        "version": draw(st.sampled_from(("draft", "2025-03-01 10:00:00.000001"))),
        "created_by_role": draw(st.sampled_from(("account", "end_user"))),
        "created_by": draw(st.sampled_from(USERS)),
        "created_at": "" if older_writer else created_text,
        "started_at": started_text,
    }
    created_s = created // 1_000_000
    log_version = created * 1000 + draw(st.integers(0, 999))
    rows: list[Version] = []
    for position, status in enumerate(statuses):
        finished = status in FINISHED
        # Versions of one kind (retried finished ones, or a pause and a resume) may share a
        # log_version, and then sometimes __time__ too: the truth's order must decide, never the
        # order rows arrive in. A finished and an unfinished version never tie (finished is final).
        tie = bool(rows) and (rows[-1].status in FINISHED) == finished and draw(st.integers(0, 3)) == 0
        log_version += 0 if tie else draw(st.integers(1, 10**9))
        time = created_s + draw(st.integers(-5, 7200))  # arrival order need not follow log_version
        if tie and draw(st.booleans()):
            time = rows[-1].time
        tokens = draw(st.integers(0, 5000)) if position else 0
        if tie and draw(st.booleans()):  # a retry differing only in its duration, if at all
            tokens = rows[-1].total_tokens
        elif finished and rows and rows[-1].finished_at and draw(st.booleans()):
            # a later retry finishing at another time (also written with an offset)
            finished_text = _iso(created + draw(st.integers(1, 600_000_000)), draw(st.sampled_from(_STYLES)))
        rows.append(
            Version(
                time=time,
                log_version=log_version,
                status=status,
                total_tokens=tokens,
                total_steps=position,
                exceptions_count=draw(st.integers(0, 2)) if finished else 0,
                elapsed_time=draw(ELAPSED) if finished else None,
                finished_at=finished_text if finished else "",
                outputs='{"answer": 42}' if finished else "",
                error_message="boom" if status == "failed" else "",
                **common,
            )
        )
    if draw(st.integers(0, 4)) == 0:  # a re-sent identical row, received later
        copy = draw(st.sampled_from(rows))
        rows.append(
            Version(**{**{f: getattr(copy, f) for f in Version.__struct_fields__}, "time": copy.time + 60})
        )
    return rows


@st.composite
def histories(draw: st.DrawFn, max_runs: int = 14, zone: str | None = None) -> list[Version]:
    """Rows of several runs, in an arbitrary physical order; created times cluster around the
    local midnights of `zone` when one is given."""
    ids = draw(st.lists(st.uuids(version=4).map(str), max_size=max_runs, unique=True))
    created_pool: list[int] = []
    rows = [row for run_id in ids for row in draw(run_versions(run_id, created_pool, zone))]
    return draw(st.permutations(rows))


def scope_of(draw: st.DrawFn, history: list[Version]) -> tuple[tuple[str, str], str]:
    """Mostly the app and trigger of some run in the history (so the answer is rarely empty)."""
    if history and draw(st.integers(0, 4)) > 0:
        run = draw(st.sampled_from(history))
        return (run.tenant_id, run.app_id), run.triggered_from
    return draw(st.sampled_from(APPS)), draw(st.sampled_from(TRIGGERS))


@st.composite
def created_ranges(draw: st.DrawFn, zone: str | None = None) -> tuple[int | None, int | None]:
    """(start, end) in µs, either unbounded, start <= end; bounds also sit on local midnights."""
    start = draw(st.none() | instants(zone))
    end = draw(st.none() | instants(zone))
    if start is not None and end is not None and start > end:
        start, end = end, start
    return start, end


zones = st.sampled_from(ZONES)


class SplitHistory(NamedTuple):
    """One history as a migrating deployment holds it."""

    history: list[Version]  # every version of every run: the truth is computed from this
    since_us: int  # STATS_LOGSTORE_SINCE
    logstore: list[Version]
    workflow_runs: list[Version]  # one row per run: the version Dify's table holds


@st.composite
def split_histories(draw: st.DrawFn, zone: str | None = None) -> SplitHistory:
    """Runs created before `since` are in workflow_runs as their latest version; the LogStore
    has every version of the later runs, plus dual-written copies of earlier runs (any subset of
    their versions, so possibly stale); workflow_runs may also hold later runs, in any state."""
    history = draw(histories(zone=zone))
    created = sorted({created_us(row) for row in history})
    since = draw(st.sampled_from(created)) if created and draw(st.booleans()) else draw(instants(zone))
    versions: dict[str, list[Version]] = {}
    for row in history:
        versions.setdefault(row.id, []).append(row)
    logstore: list[Version] = []
    workflow_runs: list[Version] = []
    for run in latest_versions(history):
        own = versions[run.id]
        if created_us(run) >= since:
            logstore += own
            if draw(st.integers(0, 2)) == 0:  # Dify still dual-writes its table
                workflow_runs.append(draw(st.sampled_from(own)))
            continue
        workflow_runs.append(run)
        if draw(st.integers(0, 2)) == 0:  # dual-written before the switch
            picked = draw(st.lists(st.sampled_from(range(len(own))), min_size=1, unique=True))
            logstore += [own[position] for position in picked]
    return SplitHistory(history, since, draw(st.permutations(logstore)), workflow_runs)
