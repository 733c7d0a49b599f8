"""Hypothesis strategies for adversarial node execution histories (queries/node_executions.py).

A run's node executions, each written as several versions that keep Dify's writer invariants
(id, workflow_run_id, node_id, node_type, index, created_at, created_by and triggered_from never
change between versions): duplicate versions, versions arriving out of log_version order, versions
tied on log_version (and sometimes __time__) that differ in status and outputs, retried, paused
and resumed nodes, iterations with many executions of one node, `workflow-tool` executions (to
be hidden), executions sharing a created time (and sometimes an index), created times written
with and without fractions and offsets or not parsable at all, values longer than SLS's field
length, and rows of the same run id under another app or tenant (never to be shown).
"""

from __future__ import annotations

from typing import NamedTuple

from hypothesis import strategies as st

from tests.reference import NodeVersion
from tests.strategies import APPS, USERS, _iso, instants

RUN_ID = "0e000000-0000-4000-8000-0000000000e1"
OTHER_RUN_ID = "0e000000-0000-4000-8000-0000000000e2"
FINAL = ("succeeded", "failed", "exception", "stopped")
LONG_OUTPUT = '{"text": "' + "x" * 2100 + '"}'  # longer than the stand-in's 2,048 characters
OUTPUTS = ('{"answer": 42}', '{"answer": 43}', '{"text": "B"}', '{"text": "a"}', LONG_OUTPUT, "")
# A written run: its created time (epoch µs) and the write time of its last version (epoch s).
MAX_SKEW_S = 300  # node versions are written within this of the run's own write times


class RunTimes(NamedTuple):
    created_us: int
    last_written_s: int


@st.composite
def _execution(
    draw: st.DrawFn,
    run_id: str,
    app: tuple[str, str],
    times: RunTimes,
    index: int,
    node_id: str,
    parsable: bool,
) -> list[NodeVersion]:
    created_us = times.created_us + draw(st.sampled_from((0, 0, 1, 1_000, 2_000_000)))
    styles = ("naive", "naive", "millis", "zulu", "plus8") + (() if parsable else ("broken",))
    style = draw(st.sampled_from(styles))
    if style == "millis":
        created_us -= created_us % 1000
    created_at = "" if style == "broken" else _iso(created_us, style)
    final = draw(st.sampled_from((*FINAL, "running", "paused")))
    statuses = ["running"]
    for _ in range(draw(st.integers(0, 2))):
        statuses += draw(st.sampled_from((["retry", "running"], ["paused", "running"])))
    if final != "running":
        statuses += [final] * draw(st.integers(1, 2))  # a re-sent final version
    common = {
        "id": draw(st.uuids(version=4).map(str)),
        "tenant_id": app[0],
        "app_id": app[1],
        "workflow_id": app[1],
        "triggered_from": draw(st.sampled_from(("workflow-run",) * 4 + ("workflow-tool", "single-step"))),
        "workflow_run_id": run_id,
        "index": index,
        "node_id": node_id,
        "node_type": "code" if node_id == "loop" else "llm",
        "created_at": created_at,
        "created_by_role": "account",
        "created_by": draw(st.sampled_from(USERS)),
    }
    created_s = times.created_us // 1_000_000
    log_version = created_us * 1000
    rows: list[NodeVersion] = []
    for status in statuses:
        # Versions may share a log_version, and then sometimes __time__ too: the truth's complete
        # order must decide, never the order rows arrive in.
        tie = bool(rows) and draw(st.integers(0, 3)) == 0
        log_version += 0 if tie else draw(st.integers(1, 10**9))
        time = draw(st.integers(created_s - MAX_SKEW_S, times.last_written_s + MAX_SKEW_S))
        if tie and draw(st.booleans()):
            time = rows[-1].time
        finished = status in FINAL
        rows.append(
            NodeVersion(
                **common,
                time=time,
                log_version=log_version,
                status=status,
                outputs=draw(st.sampled_from(OUTPUTS)) if status != "running" else "",
                inputs='{"q": 1}' if draw(st.booleans()) else "not json {",
                process_data=draw(st.sampled_from(("", "{}", '{"step": 2}'))),
                execution_metadata=draw(st.sampled_from(("", "{}", '{"total_tokens": 7}'))),
                error="boom" if status in ("failed", "exception") else "",
                elapsed_time=draw(st.none() | st.floats(0, 60, allow_nan=False)) if finished else None,
                finished_at=_iso(created_us + 5_000_000, "naive") if finished else "",
                title=draw(st.sampled_from(("LLM", "LLM 2"))),
                predecessor_node_id=draw(st.sampled_from(("", "start"))),
            )
        )
    return rows


@st.composite
def run_times(draw: st.DrawFn) -> RunTimes:
    created = draw(instants())
    return RunTimes(created, created // 1_000_000 + draw(st.integers(0, 7_200)))


@st.composite
def node_histories(
    draw: st.DrawFn, times: RunTimes, max_executions: int = 12, parsable: bool = False
) -> list[NodeVersion]:
    """Node versions of the run RUN_ID of each app in APPS (the same run id under other apps and
    tenants: isolation) and of OTHER_RUN_ID, in an arbitrary physical order; `parsable`: every
    created time parses (as Dify's own table needs)."""
    rows: list[NodeVersion] = []
    for app in APPS:
        for run_id in (RUN_ID, OTHER_RUN_ID):
            executions = draw(st.integers(0, max_executions if app == APPS[0] and run_id == RUN_ID else 2))
            index = 0
            for _ in range(executions):
                index += draw(st.sampled_from((1, 1, 1, 0)))  # an index shared now and then
                node_id = draw(st.sampled_from(("start", "llm", "loop", "loop", "end")))  # iterations: loop
                rows += draw(_execution(run_id, app, times, index, node_id, parsable))
    return draw(st.permutations(rows))
