"""Admission: at most STATS_MAX_INFLIGHT statistics requests are worked on at once.

Beyond it a request gets a fast 503 with `Retry-After` instead of joining a queue whose CPU work
(parsing, rollups, JSON) would delay everyone, /healthz and /readyz included: those, and
/metrics, are never counted nor refused, so probes stay answerable under any load.

A request counts from its admission, which comes after its credentials are checked
(app/http/auth.py) and before its body is read, until its answer is sent; so a client holding
bodies back holds its own places only. Each requester gets at most STATS_TENANT_SHARE of the
limit, so one requester's flood or stalled bodies leave room for the others. The requester is the
tenant named in the path; else (Grafana's routes) the tenant of a key that names exactly one;
else the key itself (a key naming several tenants, or `*`). With auth off, the routes that would
need a key and name no tenant count as one requester. Console routes name their tenant only once
Dify answered, after admission: they count against the limit only.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from app.config import ApiKey
from app.http.auth import CREDENTIALS
from app.http.early_errors import send_error

ALWAYS_ADMITTED = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER = {"Retry-After": "1"}
Requester = str | ApiKey  # a tenant id, or a key naming several tenants (or all)
WITHOUT_KEY = "(auth off)"  # never a tenant id: those are UUIDs


def requester(scope: Scope) -> Requester | None:
    """Whom the request counts against, beyond the limit every request counts against."""
    tenant = scope.get("path_params", {}).get("tenant_id")
    if isinstance(tenant, str):
        return tenant.lower()
    key: ApiKey | None = scope.get("auth")
    if key is None:
        needs_key = scope["route_handler"].opt.get(CREDENTIALS, "api_key") == "api_key"
        return WITHOUT_KEY if needs_key else None
    if key.tenants is not None and len(key.tenants) == 1:
        return next(iter(key.tenants))
    return key


class InflightGate:
    """The count of admitted requests, shared by every route of one application."""

    def __init__(self, limit: int, tenant_share: float = 1.0) -> None:
        self.limit = limit
        self.tenant_limit = max(1, int(limit * tenant_share))
        self.inflight = 0
        self.by_requester: dict[Requester, int] = {}
        self.refused = 0

    def refusal(self, who: Requester | None) -> str | None:
        """Why the request cannot be admitted now, or None."""
        if self.inflight >= self.limit:
            return "too many requests in progress (STATS_MAX_INFLIGHT); try again shortly"
        if who is not None and self.by_requester.get(who, 0) >= self.tenant_limit:
            return (
                "this tenant's (or key's) share of the requests in progress is in use "
                "(STATS_TENANT_SHARE of STATS_MAX_INFLIGHT); try again shortly"
            )
        return None

    def admit(self, who: Requester | None) -> None:
        self.inflight += 1
        if who is not None:
            self.by_requester[who] = self.by_requester.get(who, 0) + 1

    def release(self, who: Requester | None) -> None:
        self.inflight -= 1
        if who is not None:
            self.by_requester[who] -= 1
            if not self.by_requester[who]:
                del self.by_requester[who]


class AdmissionMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, gate: InflightGate) -> None:
        self.gate = gate

    @staticmethod
    def should_bypass_for_scope(scope: Scope) -> bool:
        return scope["path"] in ALWAYS_ADMITTED

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        who = requester(scope)
        refusal = self.gate.refusal(who)
        if refusal is not None:
            self.gate.refused += 1
            await send_error(send, 503, "overloaded", refusal, RETRY_AFTER)
            return
        self.gate.admit(who)
        try:
            await next_app(scope, receive, send)
        finally:
            self.gate.release(who)
