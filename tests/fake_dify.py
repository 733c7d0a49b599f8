"""A stand-in for Dify's console API (the one service that cannot run here), on a real port.

It authenticates like Dify: `Authorization: Bearer <token>`, or the `access_token` cookie with
the CSRF double submit (`csrf_token` cookie == `X-CSRF-Token` header). Answers use Dify's shapes
and status codes: 401 without a valid session, 404 for an app outside the account's workspace,
403 for an app the account may not open. Tokens `slow`, `broken` and `garbage` misbehave;
`sluggish` is a valid session (that of `ada-token`) answered after 0.4 s on every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.params import FromPath

from tests.live import serve


class Account(msgspec.Struct, frozen=True):
    tenant_id: str
    timezone: str
    apps: frozenset[str]
    forbidden_apps: frozenset[str] = frozenset()


def _error(status: int, code: str, message: str) -> Response[dict[str, object]]:
    return Response({"code": code, "message": message, "status": status}, status_code=status)


SLUGGISH_S = 0.4


def build_fake_dify(
    accounts: dict[str, Account], calls: list[str], received: list[dict[str, str]] | None = None
) -> Litestar:
    def session(request: Request[Any, Any, Any]) -> tuple[str | None, Response[Any] | None]:
        if received is not None:
            received.append(dict(request.headers))
        bearer = request.headers.get("authorization", "")
        token = bearer.removeprefix("Bearer ").strip() if bearer.startswith("Bearer ") else None
        if token is None:
            token = request.cookies.get("access_token")
            if token is not None and request.cookies.get("csrf_token") != request.headers.get("x-csrf-token"):
                return None, _error(401, "unauthorized", "CSRF token is missing or invalid.")
        if token is None or (
            token not in accounts and token not in ("slow", "broken", "garbage", "sluggish")
        ):
            return None, _error(401, "unauthorized", "Invalid token.")
        return token, None

    async def answer_as(token: str) -> Account:
        if token == "sluggish":
            await asyncio.sleep(SLUGGISH_S)
            return accounts["ada-token"]
        return accounts[token]

    async def misbehave(token: str) -> Response[Any] | None:
        if token == "slow":
            await asyncio.sleep(3)
        if token == "broken":
            return _error(500, "internal_server_error", "The server encountered an internal error.")
        if token == "garbage":
            return Response("<html>maintenance</html>", media_type="text/html")
        return None

    @get("/console/api/apps/{app_id:str}")
    async def app_detail(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
        calls.append("app")
        token, denied = session(request)
        if denied or token is None:
            return denied or _error(401, "unauthorized", "Invalid token.")
        if (odd := await misbehave(token)) is not None:
            return odd
        account = await answer_as(token)
        if app_id in account.forbidden_apps:
            return _error(403, "forbidden", "You don't have the permission to access this app.")
        if app_id not in account.apps:
            return _error(404, "not_found", "App not found.")
        return Response({"id": app_id, "name": "demo", "mode": "workflow"})

    @get("/console/api/workspaces/current")
    async def workspace(request: Request[Any, Any, Any]) -> Response[Any]:
        calls.append("workspace")
        token, denied = session(request)
        if denied or token is None:
            return denied or _error(401, "unauthorized", "Invalid token.")
        account = await answer_as(token)
        return Response({"id": account.tenant_id, "name": "Workspace", "status": "normal"})

    @get("/console/api/account/profile")
    async def profile(request: Request[Any, Any, Any]) -> Response[Any]:
        calls.append("profile")
        token, denied = session(request)
        if denied or token is None:
            return denied or _error(401, "unauthorized", "Invalid token.")
        account = await answer_as(token)
        return Response({"id": "acc", "name": "Ada", "timezone": account.timezone})

    return Litestar(route_handlers=[app_detail, workspace, profile])


@contextmanager
def serve_fake_dify(
    accounts: dict[str, Account], received: list[dict[str, str]] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Run the fake console on 127.0.0.1 on a free port; yields (base URL, call log). Each
    call's request headers are appended to `received` when given."""
    calls: list[str] = []
    with serve(build_fake_dify(accounts, calls, received)) as base_url:
        yield base_url, calls
