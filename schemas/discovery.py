"""Answers of the discovery routes: which tenants and apps have runs. Ids only: app names live in
Dify's database, which the LogStore does not hold."""

from __future__ import annotations

from typing import Annotated

import msgspec

Since = Annotated[
    int,
    msgspec.Meta(
        description="runs created from this instant on are counted (90 days before the answer was "
        "computed), epoch seconds",
        examples=[1733011200],
    ),
]
LastRunAt = Annotated[
    int,
    msgspec.Meta(description="created time of the newest run, epoch seconds, floored", examples=[1740844799]),
]
Runs = Annotated[int, msgspec.Meta(description="runs created since `since`, every trigger source and status")]
Uuid = Annotated[str, msgspec.Meta(examples=["a1000000-0000-4000-8000-0000000000a1"])]


class AppRuns(msgspec.Struct, frozen=True):
    app_id: Uuid
    runs: Runs
    last_run_at: LastRunAt


class TenantAppsAnswer(msgspec.Struct, frozen=True):
    """The tenant's apps with runs since `since`, busiest first (then by app id)."""

    since: Since
    data: list[AppRuns]


class TenantRuns(msgspec.Struct, frozen=True):
    tenant_id: Uuid
    apps: Annotated[int, msgspec.Meta(description="apps with runs since `since`", examples=[3])]
    runs: Runs
    last_run_at: LastRunAt


class TenantsAnswer(msgspec.Struct, frozen=True):
    """Tenants with runs since `since`, busiest first (then by tenant id)."""

    since: Since
    data: list[TenantRuns]
