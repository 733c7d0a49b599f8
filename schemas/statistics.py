"""Answers of the four daily statistics; the same JSON as Dify's console."""

from __future__ import annotations

from typing import Annotated

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


class DailyRunsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyRuns]


class DailyTerminalsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyTerminals]


class DailyTokenCostsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyTokenCosts]


class DailyInteractionsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyInteractions]
