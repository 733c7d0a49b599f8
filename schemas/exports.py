"""The run export's validated request (GET .../runs/export)."""

from __future__ import annotations

import msgspec

from schemas.requests import RunStatus, TriggerSource


class RunExportRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Every run of one app and trigger source created in [start_us, end_us) (None: open), with
    the status, if given, of its latest version; `timezone` reads naive bounds and names the file."""

    tenant_id: str
    app_id: str
    triggered_from: TriggerSource
    status: RunStatus | None
    timezone: str
    start_us: int | None
    end_us: int | None
