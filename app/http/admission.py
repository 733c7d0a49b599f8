"""Admission: at most STATS_MAX_INFLIGHT statistics requests are worked on at once.

Beyond it a request gets a fast 503 with `Retry-After` instead of joining a queue whose CPU work
(parsing, rollups, JSON) would delay everyone, /healthz and /readyz included: those, and
/metrics, are never counted nor refused, so probes stay answerable under any load. A tenant
named in the path is admitted for at most its STATS_TENANT_SHARE of the limit, so one tenant's
flood leaves room for the others' requests.
"""

from __future__ import annotations

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

ALWAYS_ADMITTED = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_S = 1
_REFUSAL = msgspec.json.encode(
    {
        "code": "overloaded",
        "message": "too many requests in progress (STATS_MAX_INFLIGHT); try again shortly",
        "status": 503,
    }
)


class InflightGate:
    """The count of admitted requests, shared by every route of one application."""

    def __init__(self, limit: int, tenant_share: float = 1.0) -> None:
        self.limit = limit
        self.tenant_limit = max(1, int(limit * tenant_share))
        self.inflight = 0
        self.by_tenant: dict[str, int] = {}
        self.refused = 0

    def admits(self, tenant: str | None) -> bool:
        if self.inflight >= self.limit:
            return False
        return tenant is None or self.by_tenant.get(tenant, 0) < self.tenant_limit


def admission_middleware(app: ASGIApp, gate: InflightGate) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in ALWAYS_ADMITTED:
            await app(scope, receive, send)
            return
        tenant = scope.get("path_params", {}).get("tenant_id")
        tenant = tenant.lower() if isinstance(tenant, str) else None
        if not gate.admits(tenant):
            gate.refused += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_REFUSAL)).encode()),
                        (b"retry-after", str(RETRY_AFTER_S).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _REFUSAL, "more_body": False})
            return
        gate.inflight += 1
        if tenant is not None:
            gate.by_tenant[tenant] = gate.by_tenant.get(tenant, 0) + 1
        try:
            await app(scope, receive, send)
        finally:
            gate.inflight -= 1
            if tenant is not None:
                gate.by_tenant[tenant] -= 1
                if not gate.by_tenant[tenant]:
                    del gate.by_tenant[tenant]

    return middleware
