"""What replicas share, as the core sees it: three stores behind Protocols (the answer cache's
second level, the kept runs' reads, the settled days), each with an implementation for one process
alone. app/fleet builds the Redis ones; nothing in the core asks whether there is a Redis."""

from __future__ import annotations

from typing import NamedTuple

from app.config import Settings
from app.core.cache import NoSharedAnswers, SharedAnswerStore
from app.core.live import NoSharedRuns, SharedKeptRuns
from app.core.settled import LocalSettledDays, SettledStore


class Shared(NamedTuple):
    answers: SharedAnswerStore
    kept_runs: SharedKeptRuns
    settled: SettledStore
    near: bool = True  # False: shared answers are not also kept in process (the benchmark's Redis alone)

    @classmethod
    def alone(cls, settings: Settings) -> Shared:
        """One process: nothing shared, settled days kept in memory."""
        return cls(
            NoSharedAnswers(),
            NoSharedRuns(),
            LocalSettledDays(settings.settled_days_max, settings.tenant_share),
        )
