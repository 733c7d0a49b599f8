"""Query and path parameters shared by the native and console routes, declared once for OpenAPI."""

from __future__ import annotations

from typing import Annotated

from litestar.openapi.spec import Example
from litestar.params import QueryParameter


def _examples(*values: str) -> list[Example]:
    return [Example(value=value) for value in values]


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
TimeZone = Annotated[
    str,
    QueryParameter(
        description="IANA zone of the days and of naive bounds", examples=_examples("Asia/Shanghai", "UTC")
    ),
]
TriggeredFrom = Annotated[
    str | None,
    QueryParameter(
        description="debugging, app-run, rag-pipeline-run, rag-pipeline-debugging, webhook, schedule, plugin",
        examples=_examples("app-run", "debugging"),
    ),
]
Status = Annotated[
    str | None,
    QueryParameter(
        description="running, succeeded, failed, stopped, partial-succeeded or paused",
        examples=_examples("succeeded", "running"),
    ),
]
TimeRange = Annotated[
    str | None,
    QueryParameter(
        description="created within this long before now: 7d, 12h, 30m, 90s", examples=_examples("7d", "12h")
    ),
]
Limit = Annotated[
    str | None, QueryParameter(description="page size, 1..100 (default 20)", examples=_examples("20"))
]
LastId = Annotated[
    str | None, QueryParameter(description="id of the last run of the previous page (keyset cursor)")
]
