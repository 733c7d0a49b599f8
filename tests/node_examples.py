"""Node executions of the example runs (tests/examples.py), small enough to check by eye.

Run r1 (tenant T, app A, created 2025-03-01 15:59:59.999999 UTC, finished):
- n1 start, index 1, created 16:00:00.1: running -> succeeded.
- n2 llm, index 2, created 16:00:01: running -> retry -> succeeded, whose outputs are longer than
  SLS's 2 KB field length (cut through the stand-in, whole without it); its metadata names tokens.
- n3 end, index 3, created 16:00:01 (as n2: index decides): running, then two versions tied on
  log_version and __time__, `succeeded` and `failed`: the truth's complete order picks
  `succeeded` (status compared byte-wise, descending); elapsed_time NULL (finished - created).
- n4 llm, index 4, triggered from `workflow-tool`: a workflow-as-tool's internals, never shown.
- n5: a node of run r6 (tenant U): never shown to tenant T.
Who ran them: alice (an end user), as r1.
"""

from __future__ import annotations

from tests.examples import ALICE, R1, R6, A, T, U
from tests.reference import NodeVersion

N1, N2, N3, N4, N5 = (f"c{n}000000-0000-4000-8000-000000000000" for n in range(1, 6))
LONG_TEXT = "token " * 500  # 3,000 characters
LONG_OUTPUTS = '{"text": "' + LONG_TEXT + '"}'


def _node(node: str, time: int, log_version: int, status: str, **fields: object) -> NodeVersion:
    values: dict[str, object] = {
        "time": time,
        "id": node,
        "log_version": log_version,
        "tenant_id": T,
        "app_id": A,
        "workflow_id": A,
        "triggered_from": "workflow-run",
        "workflow_run_id": R1,
        "status": status,
        "created_by_role": "end_user",
        "created_by": ALICE,
    }
    values.update(fields)
    return NodeVersion(**values)  # type: ignore[arg-type]


def nodes() -> list[NodeVersion]:
    n1 = {
        "index": 1,
        "node_id": "start",
        "node_type": "start",
        "title": "Start",
        "created_at": "2025-03-01T16:00:00.100000",
    }
    n2 = {
        "index": 2, "node_id": "llm", "node_type": "llm", "title": "LLM", "created_at": "2025-03-01T16:00:01",
        "predecessor_node_id": "start", "inputs": '{"query": "hello"}',
    }  # fmt: skip
    n3 = {
        "index": 3,
        "node_id": "end",
        "node_type": "end",
        "title": "End",
        "created_at": "2025-03-01T16:00:01",
    }
    n4 = {"index": 4, "node_id": "inner", "node_type": "llm", "created_at": "2025-03-01T16:00:02"}
    done = {"finished_at": "2025-03-01T16:00:04"}
    llm_done = {
        "elapsed_time": 2.25, "finished_at": "2025-03-01T16:00:03.25", "outputs": LONG_OUTPUTS,
        "execution_metadata": '{"total_tokens": 25}', "process_data": '{"model": "m"}',
    }  # fmt: skip
    return [
        _node(N3, 1740844804, 300, "succeeded", **n3, **done, outputs='{"answer": "hi"}'),
        _node(N1, 1740844800, 100, "running", **n1),
        _node(N1, 1740844801, 200, "succeeded", **n1, elapsed_time=0.5, finished_at="2025-03-01T16:00:00.6"),
        _node(N2, 1740844801, 100, "running", **n2),
        _node(N2, 1740844802, 200, "retry", **n2, error="rate limited"),
        _node(N2, 1740844803, 300, "succeeded", **n2, **llm_done),
        _node(N3, 1740844801, 100, "running", **n3),
        _node(N3, 1740844804, 300, "failed", **n3, **done, error="boom"),
        _node(N4, 1740844802, 100, "succeeded", **n4, triggered_from="workflow-tool"),
        _node(N5, 1740844801, 100, "succeeded", **n1, tenant_id=U, workflow_run_id=R6),
    ]
