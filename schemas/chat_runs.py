"""The advanced-chat (chatflow) run list of Dify's console: the console's run list, each run with
the chat message that started it (Dify's `advanced_chat_workflow_run_for_list` fields)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.nodes import ConsoleRunSummary

MessageRef = Annotated[
    str | None,
    msgspec.Meta(
        description="from Dify's messages (the message whose workflow_run_id is the run); null without "
        "STATS_DIFY_DATABASE_URL or when no message names the run"
    ),
]


class ConsoleChatRunSummary(ConsoleRunSummary, frozen=True, kw_only=True):
    """A run of a chatflow app's run list: the console's run, its conversation and message."""

    conversation_id: MessageRef = None
    message_id: MessageRef = None


class ConsoleChatRunPageAnswer(msgspec.Struct, frozen=True):
    limit: int
    has_more: bool
    data: list[ConsoleChatRunSummary]
