"""Answers about runs: counts by status, the run list and one run's detail (Dify's shapes)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

RunId = Annotated[str, msgspec.Meta(examples=["3f2c1a9e-5b7d-4e1f-9a2b-6c8d0e4f1a3b"])]
Status = Annotated[
    str, msgspec.Meta(description="status of the latest version", examples=["succeeded", "running", "paused"])
]
EpochSeconds = Annotated[int, msgspec.Meta(description="epoch seconds, floored", examples=[1740844799])]


class RunCounts(msgspec.Struct, frozen=True):
    total: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    stopped: int = 0
    partial_succeeded: int = 0


class RunSummary(msgspec.Struct, frozen=True):
    id: RunId
    version: Annotated[str, msgspec.Meta(examples=["draft"])]
    status: Status
    elapsed_time: float
    total_tokens: int
    total_steps: int
    created_by_role: str
    created_by: str
    created_at: EpochSeconds
    finished_at: Annotated[
        int | None,
        msgspec.Meta(description="epoch seconds, floored; null while unfinished", examples=[1740844805]),
    ]
    exceptions_count: int
    retry_index: int = 0


class RunPageAnswer(msgspec.Struct, frozen=True):
    limit: int
    has_more: bool
    data: list[RunSummary]


class RunDetail(RunSummary, frozen=True, kw_only=True):
    """A run summary plus what the detail page shows."""

    tenant_id: str
    app_id: str
    workflow_id: str
    type: str
    triggered_from: str
    graph: Annotated[Any, msgspec.Meta(description="parsed JSON; {} when empty")]
    inputs: Annotated[
        Any, msgspec.Meta(description="parsed JSON; {} when empty", examples=[{"query": "hello"}])
    ]
    outputs: Annotated[
        Any, msgspec.Meta(description="parsed JSON; {} when empty", examples=[{"answer": "hi"}])
    ]
    error: Annotated[str | None, msgspec.Meta(description="null when none", examples=[None, "model timeout"])]
    truncated_fields: Annotated[
        list[str],
        msgspec.Meta(
            description="graph, inputs, outputs or error_message as the store may have cut them: SLS "
            "cuts text values at its field length (STATS_SLS_FIELD_BYTES); a cut JSON document is "
            "answered as its text, not parsed",
            examples=[[], ["outputs"]],
        ),
    ] = []
