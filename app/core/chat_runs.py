"""The advanced-chat (chatflow) run list of Dify's console: the console's run list, each run with
the chat message that started it.

The same runs, keyset pages and filters as the console's /workflow-runs (from either source
during a migration: app/stores/repository.py), then, per page, one read of Dify's `messages`
(app/stores/messages.py) beside the one of its people; cached like the run list.
"""

from __future__ import annotations

import asyncio

import msgspec

from app.config import Settings
from app.core import answers
from app.core.cache import AnswerCache, CacheResult
from app.stores.messages import MessageReader
from app.stores.people import PeopleReader
from app.stores.repository import StatsRepository
from schemas.chat_runs import ConsoleChatRunPageAnswer, ConsoleChatRunSummary
from schemas.requests import RunListRequest


class ChatRunList:
    def __init__(
        self,
        repository: StatsRepository,
        people: PeopleReader,
        messages: MessageReader,
        cache: AnswerCache,
        settings: Settings,
    ) -> None:
        self.repository = repository
        self.people = people
        self.messages = messages
        self.cache = cache
        self.ttl = settings.cache_ttl

    async def page(self, request: RunListRequest) -> tuple[ConsoleChatRunPageAnswer, CacheResult]:
        async def load() -> ConsoleChatRunPageAnswer:
            page = await self.repository.run_page(request)
            people, messages = await asyncio.gather(
                self.people.read((run.created_by_role, run.created_by) for run in page.data),
                self.messages.read(request.app_id, ((run.id, run.created_at) for run in page.data)),
            )
            console = answers.console_run_page(page, people)
            data = []
            for run in console.data:
                message = messages.get(run.id.lower())
                data.append(
                    ConsoleChatRunSummary(
                        **msgspec.structs.asdict(run),
                        conversation_id=message.conversation_id if message else None,
                        message_id=message.message_id if message else None,
                    )
                )
            return ConsoleChatRunPageAnswer(limit=console.limit, has_more=console.has_more, data=data)

        return await self.cache.get_or_load(
            ("console-chat-runs", request),
            self.ttl,
            load,
            tenant=request.tenant_id,
            value_type=ConsoleChatRunPageAnswer,
        )
