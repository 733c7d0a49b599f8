"""The memory bound of kept runs: total runs, one tenant's share, states that cannot fit."""

from __future__ import annotations

from app.run_states import KeptRuns, RunStateStore
from queries.rows import RunStateRow


def _state(runs: int, prefix: str) -> KeptRuns:
    state = KeptRuns(0, None)
    key = "0" * 52
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

    def key(log_version: int, tokens: int) -> str:
        return f"{log_version:020d}{0:012d}{tokens:020d}"

    def row(log_version: int, tokens: int) -> RunStateRow:
        return RunStateRow(id="r", day=1, created_us=5, created_by="u", latest_key=key(log_version, tokens))

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
    key = "0" * 32 + "-5".rjust(20, "0")
    state.merge([RunStateRow(id="r", day=1, created_us=5, created_by="u", latest_key=key)])
    assert [(r.runs, r.tokens) for r in state.rows(0, 10)] == [(1, -5)]
