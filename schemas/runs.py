"""Answers about runs: counts by status, the run list and one run's detail (Dify's shapes)."""

from __future__ import annotations

from typing import Any

import msgspec


class RunCounts(msgspec.Struct, frozen=True):
    total: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    stopped: int = 0
    partial_succeeded: int = 0


class RunSummary(msgspec.Struct, frozen=True):
    id: str
    version: str
    status: str
    elapsed_time: float
    total_tokens: int
    total_steps: int
    created_by_role: str
    created_by: str
    created_at: int  # epoch seconds, floored
    finished_at: int | None  # epoch seconds, floored; null while unfinished
    exceptions_count: int
    retry_index: int = 0


class RunPageAnswer(msgspec.Struct, frozen=True):
    limit: int
    has_more: bool
    data: list[RunSummary]


class RunDetail(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    app_id: str
    workflow_id: str
    type: str
    triggered_from: str
    version: str
    graph: Any
    inputs: Any
    outputs: Any
    status: str
    error: str | None
    elapsed_time: float
    total_tokens: int
    total_steps: int
    created_by_role: str
    created_by: str
    created_at: int
    finished_at: int | None
    exceptions_count: int
    retry_index: int = 0
