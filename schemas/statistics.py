"""Answers of the daily statistics: Dify's four (the same JSON as Dify's console) and the
operators' two (runs by final status, run durations), in the same `{"data": [...]}` shape."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

import msgspec

Day = Annotated[str, msgspec.Meta(description="local calendar day (ISO date)", examples=["2025-03-01"])]


class DailyRuns(msgspec.Struct, frozen=True):
    date: Day
    runs: Annotated[int, msgspec.Meta(description="runs created that day, every status", examples=[12])]


class DailyTerminals(msgspec.Struct, frozen=True):
    date: Day
    terminal_count: Annotated[int, msgspec.Meta(description="distinct users that day", examples=[3])]


class DailyTokenCosts(msgspec.Struct, frozen=True):
    date: Day
    token_count: Annotated[
        int, msgspec.Meta(description="tokens of the runs created that day", examples=[4512])
    ]


class DailyInteractions(msgspec.Struct, frozen=True):
    date: Day
    interactions: Annotated[
        float, msgspec.Meta(description="runs / distinct users, 2 decimals half-even", examples=[1.67])
    ]


StatusRuns = Annotated[
    int, msgspec.Meta(description="runs created that day whose latest version has this status", examples=[3])
]


class DailyStatus(msgspec.Struct, frozen=True):
    """Runs created that day by the status of their latest version; every status in every point."""

    date: Day
    succeeded: StatusRuns
    failed: StatusRuns
    stopped: StatusRuns
    partial_succeeded: StatusRuns
    running: StatusRuns
    paused: StatusRuns
    failure_rate: Annotated[
        float | None,
        msgspec.Meta(
            description="failed / finished runs (succeeded, failed, stopped, partial-succeeded), "
            "4 decimals half-even; null without finished runs",
            examples=[0.0417],
        ),
    ]


Seconds = Annotated[
    float | None,
    msgspec.Meta(description="seconds, to the microsecond; null without finished runs", examples=[12.5]),
]


class DailyDuration(msgspec.Struct, frozen=True):
    """Durations of the runs created that day whose latest version is finished: elapsed_time of that
    version, or finished_at - started_at when it has none. Percentiles by nearest rank: the value
    at position ceil(p * count) of the day's durations in ascending order."""

    date: Day
    count: Annotated[int, msgspec.Meta(description="finished runs with a known duration", examples=[24])]
    p50: Seconds
    p95: Seconds
    p99: Seconds
    max: Seconds


Point = TypeVar("Point")


class DailyAnswer(msgspec.Struct, Generic[Point], frozen=True):
    """One point per local day with runs, ascending."""

    data: list[Point]
