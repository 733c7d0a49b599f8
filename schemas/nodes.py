"""Answers about a run's node executions (the run detail's tracing panel), and the people Dify's
console names as who ran a run or a node; console shapes follow Dify's own field lists and order
(`workflow_run_node_execution_fields`, `simple_account_fields`, `simple_end_user_fields`)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from schemas.runs import RunDetail, RunId, RunSummary


class SimpleAccount(msgspec.Struct, frozen=True):
    """A console account (Dify's `accounts`)."""

    id: str
    name: str
    email: str


class SimpleEndUser(msgspec.Struct, frozen=True):
    """An end user of a published app (Dify's `end_users`)."""

    id: str
    type: str
    is_anonymous: bool
    session_id: str


Account = Annotated[
    SimpleAccount | None,
    msgspec.Meta(description="who ran it, when an account did; null without STATS_DIFY_DATABASE_URL"),
]
EndUser = Annotated[
    SimpleEndUser | None,
    msgspec.Meta(description="who ran it, when an end user did; null without STATS_DIFY_DATABASE_URL"),
]
Document = Annotated[
    Any,
    msgspec.Meta(
        description="parsed JSON; null when empty; the text itself when the store cut it or it does not parse"
    ),
]
Cut = Annotated[bool, msgspec.Meta(description="the value may have been cut by the store (SLS field length)")]
HandoffDuration = Annotated[
    float,
    msgspec.Meta(
        description="seconds the run spent handed off (Dify's newest console); 0.0: neither the "
        "LogStore nor the workflow_runs columns read here record it, and Dify answers 0.0 for such runs"
    ),
]


class ConsoleNodeExecution(msgspec.Struct, frozen=True, kw_only=True):
    """One node execution at its latest version: Dify's fields, in Dify's order."""

    id: RunId
    index: int
    predecessor_node_id: str | None
    node_id: str
    node_type: Annotated[str, msgspec.Meta(examples=["llm"])]
    title: str
    inputs: Document
    process_data: Document
    outputs: Document
    status: Annotated[str, msgspec.Meta(examples=["succeeded", "running", "exception"])]
    error: str | None
    elapsed_time: Annotated[float, msgspec.Meta(description="seconds")]
    execution_metadata: Annotated[Any, msgspec.Meta(description="parsed JSON; {} when empty")]
    extras: Annotated[Any, msgspec.Meta(description="{} (Dify's tool icons are not known here)")]
    created_at: Annotated[int | None, msgspec.Meta(description="epoch seconds; null when unparsable")]
    created_by_role: str
    created_by_account: Account
    created_by_end_user: EndUser
    finished_at: Annotated[int | None, msgspec.Meta(description="epoch seconds; null while unfinished")]
    inputs_truncated: Cut
    outputs_truncated: Cut
    process_data_truncated: Cut


class NodeExecution(ConsoleNodeExecution, frozen=True, kw_only=True):
    """The console's fields, plus who ran it by id and every value the store may have cut."""

    created_by: str
    truncated_fields: Annotated[
        list[str],
        msgspec.Meta(
            description="inputs, process_data, outputs, execution_metadata or error as the store may have "
            "cut them (SLS cuts text values at STATS_SLS_FIELD_BYTES) or not parsable as JSON",
            examples=[[], ["outputs"]],
        ),
    ] = []


class ConsoleNodeExecutionsAnswer(msgspec.Struct, frozen=True):
    data: list[ConsoleNodeExecution]


class ConsoleNodes(msgspec.Struct, frozen=True):
    """The console's answer, and whether the run has more node executions than it holds (said in
    a header: Dify's shape has no field for it)."""

    answer: ConsoleNodeExecutionsAnswer
    has_more: bool


class NodeExecutionsAnswer(msgspec.Struct, frozen=True):
    data: list[NodeExecution]
    has_more: Annotated[
        bool,
        msgspec.Meta(
            description="the run has more node executions than STATS_NODE_EXECUTIONS_MAX; these are the first"
        ),
    ] = False


class ConsoleRunSummary(RunSummary, frozen=True, kw_only=True):
    """A run of the console's run list: the summary plus who ran it (Dify's list names accounts only)."""

    created_by_account: Account = None
    handoff_duration: HandoffDuration = 0.0


class ConsoleRunPageAnswer(msgspec.Struct, frozen=True):
    limit: int
    has_more: bool
    data: list[ConsoleRunSummary]


class ConsoleRunDetail(RunDetail, frozen=True, kw_only=True):
    """The console's run detail: the detail plus who ran it."""

    created_by_account: Account = None
    created_by_end_user: EndUser = None
    handoff_duration: HandoffDuration = 0.0
