"""Query and path parameters shared by the native and console routes, declared once for OpenAPI."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

Start = Annotated[
    str | None,
    QueryParameter(
        description="ISO-8601 date/date-time or YYYY-MM-DD HH:MM (naive = in timezone); inclusive"
    ),
]
End = Annotated[
    str | None,
    QueryParameter(
        description="ISO-8601 date/date-time or YYYY-MM-DD HH:MM (naive = in timezone); exclusive"
    ),
]
TimeZone = Annotated[str, QueryParameter(description="IANA zone of the days and of naive bounds")]
TriggeredFrom = Annotated[
    str | None,
    QueryParameter(
        description="debugging, app-run, rag-pipeline-run, rag-pipeline-debugging, webhook, schedule, plugin"
    ),
]
Status = Annotated[
    str | None,
    QueryParameter(description="running, succeeded, failed, stopped, partial-succeeded or paused"),
]
TimeRange = Annotated[
    str | None, QueryParameter(description="created within this long before now: 7d, 12h, 30m, 90s")
]
Limit = Annotated[str | None, QueryParameter(description="page size, 1..100 (default 20)")]
LastId = Annotated[
    str | None, QueryParameter(description="id of the last run of the previous page (keyset cursor)")
]
