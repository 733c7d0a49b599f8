"""Every path and query parameter, typed and bounded once, so litestar checks it before a handler
runs and the OpenAPI document shows the same types, bounds and enums.

Ids are strings matched in full by a UUID pattern (36 characters exactly, so a trailing newline
is refused too); values litestar cannot check (instants, zones) are parsed in app/http/params.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar.openapi.spec import Example
from litestar.params import Parameter

from schemas.requests import RunStatus, TriggerSource

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _examples(*values: str) -> list[Example]:
    return [Example(value=value) for value in values]


def _uuid(description: str) -> Any:
    return Parameter(pattern=UUID_PATTERN, min_length=36, max_length=36, description=description)


TenantId = Annotated[str, _uuid("tenant (workspace) id")]
AppId = Annotated[str, _uuid("app id")]
RunId = Annotated[str, _uuid("run id")]
Start = Annotated[
    str | None,
    Parameter(
        max_length=40,
        description="ISO-8601 date/date-time or YYYY-MM-DD HH:MM (naive = in timezone); inclusive",
        examples=_examples("2025-03-01", "2025-03-01 08:00"),
    ),
]
End = Annotated[
    str | None,
    Parameter(
        max_length=40,
        description="ISO-8601 date/date-time or YYYY-MM-DD HH:MM (naive = in timezone); exclusive",
    ),
]
TimeZone = Annotated[
    str,
    Parameter(
        max_length=64,
        description="IANA zone of the days and of naive bounds",
        examples=_examples("Asia/Shanghai", "UTC"),
    ),
]
DailyTrigger = Annotated[TriggerSource, Parameter(description="trigger source of the runs counted")]
RunsTrigger = Annotated[TriggerSource, Parameter(description="trigger source of the runs (Dify: debugging)")]
Status = Annotated[RunStatus | None, Parameter(description="only runs whose latest version has this status")]
TimeRange = Annotated[
    str | None,
    Parameter(
        pattern=r"^[0-9]{1,9}[dhms]$",
        max_length=10,
        description="created within this long before now: 7d, 12h, 30m, 90s",
        examples=_examples("7d", "12h"),
    ),
]
Limit = Annotated[int, Parameter(ge=1, le=100, description="page size")]
LastId = Annotated[str | None, _uuid("id of the last run of the previous page (keyset cursor)")]
