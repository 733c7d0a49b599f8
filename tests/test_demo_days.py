"""The demo history reads as real days do: no day stands out, and some runs are still going."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

from app.demo import generate_rows

NOW = datetime(2026, 6, 15, 18, 30, tzinfo=UTC)


def test_the_last_day_has_as_many_runs_as_the_days_before_and_some_still_going() -> None:
    """Unfinished runs used to be moved into the last 6 hours, which made every dashboard's today
    a 7x spike that read as an incident."""
    created: dict[str, datetime] = {}
    latest: dict[str, str] = {}
    for row in generate_rows(20_000, now=NOW):
        run_id, status, created_text = row[1], row[12], row[21]
        created[run_id] = datetime.fromisoformat(created_text).replace(tzinfo=UTC)
        latest[run_id] = status  # rows of a run come in log_version order, but for a late first one
    days_ago = Counter(int((NOW - moment).total_seconds() // 86_400) for moment in created.values())
    before = statistics.median(days_ago[day] for day in range(1, 15))
    assert 0.7 * before <= days_ago[0] <= 1.3 * before, (days_ago[0], before)
    recent = [run for run, moment in created.items() if (NOW - moment).total_seconds() < 6 * 3600]
    going = Counter(latest[run] for run in recent if latest[run] in ("running", "paused"))
    assert going["running"] and going["paused"] and going.total() >= 5, going


def test_a_demo_is_its_seed_and_the_moment_it_is_loaded() -> None:
    """The README's split-demo sentence: loaded at the same moment, two demos hold the same runs;
    loaded a day later, every created time is a day later, so their days (and numbers) differ."""
    now_rows = list(generate_rows(300, now=NOW))
    assert list(generate_rows(300, now=NOW)) == now_rows
    later_rows = list(generate_rows(300, now=NOW + timedelta(days=1)))
    created = {row[1]: datetime.fromisoformat(row[21]) for row in now_rows}
    later = {row[1]: datetime.fromisoformat(row[21]) for row in later_rows}
    assert created.keys() == later.keys()
    assert {later[run] - created[run] for run in created} == {timedelta(days=1)}
