"""Answers of the four daily statistics; the same JSON as Dify's console."""

from __future__ import annotations

import msgspec


class DailyRuns(msgspec.Struct, frozen=True):
    date: str
    runs: int


class DailyTerminals(msgspec.Struct, frozen=True):
    date: str
    terminal_count: int


class DailyTokenCosts(msgspec.Struct, frozen=True):
    date: str
    token_count: int


class DailyInteractions(msgspec.Struct, frozen=True):
    date: str
    interactions: float


class DailyRunsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyRuns]


class DailyTerminalsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyTerminals]


class DailyTokenCostsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyTokenCosts]


class DailyInteractionsAnswer(msgspec.Struct, frozen=True):
    data: list[DailyInteractions]
