"""Answers of the four daily statistics; the same JSON as Dify's console."""

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


Point = TypeVar("Point")


class DailyAnswer(msgspec.Struct, Generic[Point], frozen=True):
    """One point per local day with runs, ascending."""

    data: list[Point]
