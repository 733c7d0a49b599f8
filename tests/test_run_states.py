"""The memory bound of kept runs: total runs, one tenant's share, states that cannot fit."""

from __future__ import annotations

from app.core.kept_runs import KeptRuns, RunStateStore
from queries.dialects import DURATION_BIAS, NO_DURATION
from queries.rows import RunStateRow


def _key(log_version: int, tokens: int = 0, duration_us: int | None = None, status: str = "running") -> str:
    """A latest-version key as queries/run_rows.py reads it."""
    duration = NO_DURATION if duration_us is None else str(duration_us + DURATION_BIAS)
    return f"{log_version:020d}{0:012d}{tokens:020d}{duration}{status}"


def _state(runs: int, prefix: str) -> KeptRuns:
    state = KeptRuns(0, None)
    key = _key(0)
    state.merge(
        RunStateRow(id=f"{prefix}{n}", day=1, created_us=n, created_by="u", latest_key=key)
        for n in range(runs)
    )
    return state


def test_a_tenant_over_its_share_evicts_its_own_oldest_state_not_another_tenants() -> None:
    store = RunStateStore(max_runs=100, tenant_share=0.5)
    assert store.keep("b", "b1", _state(40, "b"))
    assert store.keep("a", "a1", _state(30, "a"))
    assert store.keep("a", "a2", _state(30, "x"))  # a would hold 60 > 50: its own a1 goes
    assert store.get("a", "a1") is None and store.get("a", "a2") is not None
    assert store.get("b", "b1") is not None
    assert store.runs == 70


def test_a_state_larger_than_a_tenants_share_is_not_kept_and_not_tried_again_for_a_while() -> None:
    store = RunStateStore(max_runs=100, tenant_share=0.5, too_large_for_s=3600)
    assert store.may_keep("a", "big")
    assert not store.keep("a", "big", _state(51, "a"))
    assert store.get("a", "big") is None and not store.may_keep("a", "big")
    assert store.may_keep("a", "other") and store.runs == 0


def test_keeping_is_off_at_zero() -> None:
    assert not RunStateStore(max_runs=0, tenant_share=0.5).may_keep("a", "k")


def test_a_later_version_replaces_a_runs_tokens_and_an_earlier_one_does_not() -> None:
    state = KeptRuns(0, None)

    def row(log_version: int, tokens: int) -> RunStateRow:
        return RunStateRow(id="r", day=1, created_us=5, created_by="u", latest_key=_key(log_version, tokens))

    state.merge([row(2, 70)])
    state.merge([row(1, 999), row(2, 70)])  # older, and a duplicate: nothing changes
    assert [(r.runs, r.users, r.tokens) for r in state.rows(0, 10)] == [(1, 1, 70)]
    state.merge([row(3, 100)])
    assert [(r.runs, r.tokens) for r in state.rows(0, 10)] == [(1, 100)]
    assert [(r.runs, r.users, r.tokens) for r in state.rows(5, 6)] == [(1, 1, 100)]  # a partial day agrees
    assert state.rows(6, 10) == [] and state.size == 1


def test_empty_states_count_against_their_tenants_share() -> None:
    """States of apps without runs cost one each: a tenant asking for many evicts only its own."""
    store = RunStateStore(max_runs=100, tenant_share=0.5)
    assert store.keep("a", "a1", _state(40, "a"))
    for n in range(1_000):
        store.keep("b", f"empty{n}", KeptRuns(0, None))
    assert store.get("a", "a1") is not None
    assert store.runs == 40 + 50


def test_a_negative_token_count_is_read_not_a_failure() -> None:
    state = KeptRuns(0, None)
    key = "0" * 32 + "-5".rjust(20, "0") + NO_DURATION + "running"
    state.merge([RunStateRow(id="r", day=1, created_us=5, created_by="u", latest_key=key)])
    assert [(r.runs, r.tokens) for r in state.rows(0, 10)] == [(1, -5)]


def test_a_runs_status_and_duration_follow_its_latest_version_in_the_day_tallies() -> None:
    """A run paused, resumed, finished, then retried with another duration: the day counts it once,
    under its latest status, and ranks only its latest duration; a whole and a partial day agree."""
    state = KeptRuns(0, None)

    def rows(*keys: tuple[str, int, str]) -> list[RunStateRow]:
        return [
            RunStateRow(id=run_id, day=1, created_us=created, created_by="u", latest_key=key)
            for key, created, run_id in keys
        ]

    def tallies(low: int, high: int) -> list[tuple[int, int, int, int, int, int | None, int | None]]:
        return [
            (r.runs, r.running, r.paused, r.succeeded, r.durations, r.p50_us, r.max_us)
            for r in state.rows(low, high)
        ]

    state.merge(rows((_key(1, status="running"), 5, "a"), (_key(1, 3, 7_000_000, "failed"), 6, "b")))
    assert tallies(0, 10) == [(2, 1, 0, 0, 1, 7_000_000, 7_000_000)]
    state.merge(rows((_key(2, status="paused"), 5, "a")))
    assert tallies(0, 10) == [(2, 0, 1, 0, 1, 7_000_000, 7_000_000)]
    state.merge(rows((_key(3, 9, 2_000_000, "succeeded"), 5, "a")))
    assert tallies(0, 10) == [(2, 0, 0, 1, 2, 2_000_000, 7_000_000)]
    state.merge(rows((_key(3, 9, 1_000_000, "succeeded"), 5, "a")))  # a tie on everything else: longer wins
    assert tallies(0, 10) == [(2, 0, 0, 1, 2, 2_000_000, 7_000_000)]
    state.merge(rows((_key(4, 9, -500, "succeeded"), 5, "a"), (_key(0, 0, 1, "succeeded"), 6, "b")))
    assert tallies(0, 10) == [(2, 0, 0, 1, 2, -500, 7_000_000)]  # a negative duration sorts first
    assert tallies(5, 6) == [(1, 0, 0, 1, 1, -500, -500)]  # the partial day walks its runs
    assert [(r.failed, r.durations, r.p95_us) for r in state.rows(6, 7)] == [(1, 1, 7_000_000)]
