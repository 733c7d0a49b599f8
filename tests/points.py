"""Answers of the daily measures in the reference's form (tests/reference.py): per day, its date
and the point's values by field name."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from app.core.measures import DailyMeasure


def answered(measure: DailyMeasure, points: Iterable[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(point.date, {field: getattr(point, field) for field in measure.fields}) for point in points]


def dated(pairs: Iterable[tuple[date, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(day.isoformat(), values) for day, values in pairs]
