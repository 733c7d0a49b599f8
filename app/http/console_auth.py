"""Delegated authorization for the Dify console drop-in paths.

Nothing of Dify's secrets is needed: the caller's own `Cookie`, `Authorization` and `X-CSRF-Token`
are forwarded to Dify's console API, which decides. Dify's 401/403/404 reach the caller as Dify
sent them; Dify unreachable, slower than STATS_DIFY_TIMEOUT (the total for one check, however
many calls it takes and however slowly Dify trickles its answer) or answering nonsense is a 503,
never access granted. Several `Cookie` headers reach Dify joined with `; ` (RFC 6265); a
dify-stats API key in `Authorization` is ours, not Dify's, and is never forwarded. Granted
verdicts are cached for STATS_AUTH_CACHE_TTL, keyed by a hash of the credentials and the app, so
a dashboard's four parallel requests cost Dify one round of calls.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import msgspec
import structlog
from litestar import Request
from litestar.exceptions import HTTPException

from app.config import ApiKey, Settings
from app.core.cache import AnswerCache
from app.http.auth import match_key
from app.stores.fairness import current_tenant

log = structlog.get_logger("dify_stats.console_auth")
FORWARDED_HEADERS = ("cookie", "authorization", "x-csrf-token")


class ConsoleAccess(msgspec.Struct, frozen=True):
    """What Dify said about this caller and app."""

    tenant_id: str
    timezone: str


class DifyDenied(HTTPException):
    """Dify's own 401/403/404, passed through with its body."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(status_code=status_code, detail="denied by Dify")
        self.body = body


class DifyUnavailable(RuntimeError):
    """Dify's console API did not give a usable answer; the caller gets a 503."""


class _Workspace(msgspec.Struct):
    id: str


class _Profile(msgspec.Struct):
    timezone: str | None = None


class ConsoleAuthorizer:
    def __init__(self, settings: Settings) -> None:
        self.base_url = (settings.dify_console_api_url or "").rstrip("/")
        self.deadline = settings.dify_timeout
        self.api_keys: tuple[ApiKey, ...] = settings.api_keys
        self.client = httpx.AsyncClient(timeout=settings.dify_timeout, follow_redirects=False)
        # Granted verdicts only: Dify's denials and failures are exceptions and are never cached.
        # The answer cache's single flight gives one round of calls to Dify per caller and app.
        self.verdicts = AnswerCache(max_entries=10_000, stale_max=0)
        self.verdict_ttl = settings.auth_cache_ttl

    async def close(self) -> None:
        await self.client.aclose()

    async def authorize(self, request: Request[Any, Any, Any], app_id: str) -> ConsoleAccess:
        if not self.base_url:
            raise DifyUnavailable("DIFY_CONSOLE_API_URL is not configured")
        headers = self.forwarded_headers(request)
        if not headers:
            raise DifyDenied(401, {"code": "unauthorized", "message": "Unauthorized.", "status": 401})
        key = hashlib.sha256(repr((sorted(headers.items()), app_id)).encode()).hexdigest()
        found, _ = await self.verdicts.get_or_load(
            key, self.verdict_ttl, lambda: self._ask_dify(headers, app_id), tenant=""
        )
        current_tenant.set(found.tenant_id)  # the request reads this tenant from here on
        return found

    def forwarded_headers(self, request: Request[Any, Any, Any]) -> dict[str, str]:
        """The caller's credentials for Dify: every `Cookie` header joined with `; `, and
        `Authorization` unless it carries one of our own API keys."""
        headers: dict[str, str] = {}
        for name in FORWARDED_HEADERS:
            values = request.headers.getall(name, [])
            if values:
                headers[name] = "; ".join(values) if name == "cookie" else values[0]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.api_keys and match_key(self.api_keys, token.strip()):
            del headers["authorization"]
        return headers

    async def _ask_dify(self, headers: dict[str, str], app_id: str) -> ConsoleAccess:
        """Every call to Dify for one verdict, within one STATS_DIFY_TIMEOUT in total."""
        until = asyncio.get_running_loop().time() + self.deadline
        try:
            async with asyncio.timeout_at(until):
                return await self._calls(headers, app_id, until)
        except TimeoutError:
            log.warning("dify_console_timeout", seconds=self.deadline)
            raise DifyUnavailable(f"Dify did not answer within {self.deadline} s") from None

    async def _calls(self, headers: dict[str, str], app_id: str, until: float) -> ConsoleAccess:
        await self._get(f"/console/api/apps/{app_id}", headers, until)
        try:
            workspace = msgspec.convert(
                await self._get("/console/api/workspaces/current", headers, until), _Workspace
            )
            profile = msgspec.convert(
                await self._get("/console/api/account/profile", headers, until), _Profile
            )
        except msgspec.ValidationError:
            log.warning("dify_console_unexpected_shape")
            raise DifyUnavailable("Dify's answer has an unexpected shape") from None
        return ConsoleAccess(tenant_id=workspace.id.lower(), timezone=profile.timezone or "UTC")

    async def _get(self, path: str, headers: dict[str, str], until: float) -> Any:
        # httpx's timeouts apply per read, so a server trickling bytes would never trip them:
        # the asyncio deadline around the whole check is what bounds it; they only back it up,
        # never longer than what is left of it.
        left = max(0.001, until - asyncio.get_running_loop().time())
        try:
            answer = await self.client.get(self.base_url + path, headers=headers, timeout=left)
        except httpx.HTTPError as error:
            log.warning("dify_console_unreachable", error_type=type(error).__name__)
            raise DifyUnavailable(type(error).__name__) from error
        if answer.status_code in (401, 403, 404):
            raise DifyDenied(answer.status_code, _json_or_text(answer))
        if answer.status_code != 200:
            log.warning("dify_console_error", status=answer.status_code)
            raise DifyUnavailable(f"Dify answered {answer.status_code}")
        try:
            return answer.json()
        except ValueError:
            log.warning("dify_console_garbage")
            raise DifyUnavailable("Dify's answer is not JSON") from None


def _json_or_text(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return {"code": "unauthorized", "message": answer.text[:200], "status": answer.status_code}
