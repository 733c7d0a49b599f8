"""Which chat message and conversation each chatflow run belongs to, as Dify's console names them
in the advanced-chat run list (`message_id`, `conversation_id`), read from Dify's PostgreSQL.

Only with Dify's database (STATS_DIFY_DATABASE_URL, or the embedded demo split into both
sources): the LogStore holds no messages. Without it, or for a run no message names, both are
null. One statement per page (queries/messages.py), never one per run; ids that are not UUIDs
(Dify's are) are not looked up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from app.stores.backend import Backend
from queries.messages import run_messages
from queries.rows import MessageRow

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class RunMessage(msgspec.Struct, frozen=True):
    """The message that started a chatflow run, and its conversation."""

    message_id: str
    conversation_id: str


def _naive_utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None)


class MessageReader:
    """Reads runs' messages from Dify's database (`backend`; None: not configured). A message is
    looked for within `slack_s` (STATS_TIME_SLACK) of its run's created time: Dify creates it just
    before the run, and the bound lets Dify's `(app_id, created_at)` index read one range."""

    def __init__(self, backend: Backend | None, slack_s: int) -> None:
        self.backend = backend
        self.slack_s = slack_s

    async def read(self, app_id: str, runs: Iterable[tuple[str, int]]) -> dict[str, RunMessage]:
        """The messages of `runs` ((run id, created time in epoch seconds) pairs) of the app, by
        run id, in one statement; empty without Dify's database or when there is no run to look up."""
        wanted = {run_id.lower(): created_s for run_id, created_s in runs if _UUID.fullmatch(run_id.lower())}
        if self.backend is None or not wanted or not _UUID.fullmatch(app_id):
            return {}
        since = _naive_utc(min(wanted.values()) - self.slack_s)
        until = _naive_utc(max(wanted.values()) + 1 + self.slack_s)
        query = run_messages(app_id, sorted(wanted), since, until)
        return {
            row.workflow_run_id: RunMessage(message_id=row.message_id, conversation_id=row.conversation_id)
            for row in await self.backend.fetch(query, MessageRow)
        }
