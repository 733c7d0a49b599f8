"""Delegated authorization for the Dify console drop-in paths.

Nothing of Dify's secrets is needed: the caller's own `Cookie`, `Authorization` and `X-CSRF-Token`
are forwarded to Dify's console API, which decides. Dify's 401/403/404 reach the caller as Dify
sent them; Dify unreachable, slower than STATS_DIFY_TIMEOUT (the total for one check, however
many calls it takes and however slowly Dify trickles its answer) or answering nonsense is a 503,
never access granted. Several `Cookie` headers reach Dify joined with `; ` (RFC 6265); a
dify-stats API key in `Authorization` is ours, not Dify's, and is never forwarded. Granted
verdicts are cached for STATS_AUTH_CACHE_TTL, keyed by a hash of the credentials and the app, so
a dashboard's four parallel requests cost Dify one round of calls.

Beyond access to the app, each route family asks Dify what Dify itself checks before answering
it (app/http/console_guards.py): the caller's permission for it, asked of Dify alongside the app
detail, and the app's mode, read from that detail.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import msgspec
import structlog
from litestar import Request
from litestar.exceptions import HTTPException

from app.config import ApiKey, Settings
from app.core.cache import AnswerCache
from app.http.auth import match_key
from app.http.console_guards import DifyGuard
from app.stores.fairness import current_tenant

log = structlog.get_logger("dify_stats.console_auth")
FORWARDED_HEADERS = ("cookie", "authorization", "x-csrf-token")
T = TypeVar("T")


class ConsoleAccess(msgspec.Struct, frozen=True):
    """What Dify said about this caller and app."""

    tenant_id: str
    timezone: str
    mode: str | None = None  # the app's mode (workflow, advanced-chat, chat, ...)


class DifyDenied(HTTPException):
    """Dify's own 401/403/404, passed through with its body (and a 401's WWW-Authenticate)."""

    def __init__(self, status_code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail="denied by Dify", headers=headers)
        self.body = body


class DifyUnavailable(RuntimeError):
    """Dify's console API did not give a usable answer; the caller gets a 503."""


class _App(msgspec.Struct):
    mode: str | None = None


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

    async def authorize(
        self, request: Request[Any, Any, Any], app_id: str, guard: DifyGuard
    ) -> ConsoleAccess:
        """Dify's verdict on the caller, the app and the route family `guard` stands for, in
        Dify's order: session, permission (403), then the app's mode (404)."""
        if not self.base_url:
            raise DifyUnavailable("DIFY_CONSOLE_API_URL is not configured")
        headers = self.forwarded_headers(request)
        if not headers:
            raise DifyDenied(401, {"code": "unauthorized", "message": "Unauthorized.", "status": 401})
        credentials = sorted(headers.items())
        access_key = hashlib.sha256(repr((credentials, app_id)).encode()).hexdigest()
        permission_key = hashlib.sha256(
            repr((credentials, app_id, guard.permission_path)).encode()
        ).hexdigest()
        found, permitted = await asyncio.gather(
            self.verdicts.get_or_load(
                access_key, self.verdict_ttl, lambda: self._ask_dify(headers, app_id), tenant=""
            ),
            self.verdicts.get_or_load(
                permission_key,
                self.verdict_ttl,
                lambda: self._ask_permission(headers, app_id, guard),
                tenant="",
            ),
            return_exceptions=True,
        )
        if isinstance(found, BaseException):
            raise found  # Dify's refusal of the session or the app comes first
        if isinstance(permitted, BaseException) and not isinstance(permitted, Exception):
            raise permitted  # cancelled
        access: ConsoleAccess = found[0]
        wrong_mode = guard.mode_refusal(access.mode)
        # Dify's probe refusing the app's mode is the mode check below, in this route's words.
        mode_refused_by_probe = isinstance(permitted, DifyDenied) and permitted.status_code == 404
        if isinstance(permitted, Exception) and not (wrong_mode and mode_refused_by_probe):
            raise permitted
        if wrong_mode:
            raise DifyDenied(404, wrong_mode)
        current_tenant.set(access.tenant_id)  # the request reads this tenant from here on
        return access

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
        """Every call to Dify for access to the app, within one STATS_DIFY_TIMEOUT in total."""
        return await self._within_deadline(lambda until: self._calls(headers, app_id, until))

    async def _ask_permission(self, headers: dict[str, str], app_id: str, guard: DifyGuard) -> bool:
        """Dify's answer to the guard's probe: granted, or Dify's refusal raised as Dify sent it."""

        async def probe(until: float) -> bool:
            path = f"/console/api/apps/{app_id}{guard.permission_path}"
            await self._get(path, headers, until, guard.permission_params)
            return True

        return await self._within_deadline(probe)

    async def _within_deadline(self, calls: Callable[[float], Awaitable[T]]) -> T:
        until = asyncio.get_running_loop().time() + self.deadline
        try:
            async with asyncio.timeout_at(until):
                return await calls(until)
        except TimeoutError:
            log.warning("dify_console_timeout", seconds=self.deadline)
            raise DifyUnavailable(f"Dify did not answer within {self.deadline} s") from None

    async def _calls(self, headers: dict[str, str], app_id: str, until: float) -> ConsoleAccess:
        try:
            app = msgspec.convert(await self._get(f"/console/api/apps/{app_id}", headers, until), _App)
            workspace = msgspec.convert(
                await self._get("/console/api/workspaces/current", headers, until), _Workspace
            )
            profile = msgspec.convert(
                await self._get("/console/api/account/profile", headers, until), _Profile
            )
        except msgspec.ValidationError:
            log.warning("dify_console_unexpected_shape")
            raise DifyUnavailable("Dify's answer has an unexpected shape") from None
        return ConsoleAccess(
            tenant_id=workspace.id.lower(), timezone=profile.timezone or "UTC", mode=app.mode
        )

    async def _get(
        self, path: str, headers: dict[str, str], until: float, params: tuple[tuple[str, str], ...] = ()
    ) -> Any:
        # httpx's timeouts apply per read, so a server trickling bytes would never trip them:
        # the asyncio deadline around the whole check is what bounds it; they only back it up,
        # never longer than what is left of it.
        left = max(0.001, until - asyncio.get_running_loop().time())
        try:
            answer = await self.client.get(self.base_url + path, params=params, headers=headers, timeout=left)
        except httpx.HTTPError as error:
            log.warning("dify_console_unreachable", error_type=type(error).__name__)
            raise DifyUnavailable(type(error).__name__) from error
        if answer.status_code in (401, 403, 404):
            challenge = answer.headers.get("www-authenticate")
            headers_out = {"WWW-Authenticate": challenge} if challenge else None
            raise DifyDenied(answer.status_code, _json_or_text(answer), headers_out)
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
