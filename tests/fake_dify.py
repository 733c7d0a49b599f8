"""A stand-in for Dify's console API (the one service that cannot run here), on a real port.

It authenticates like Dify: `Authorization: Bearer <token>`, or the `access_token` cookie with
the CSRF double submit (`csrf_token` cookie == `X-CSRF-Token` header). Answers use Dify's shapes,
status codes and headers: 401 without a valid session (with `WWW-Authenticate`), 404
`app_not_found` for an app outside the account's workspace, 403 `forbidden` for an app the
account may not open. Tokens `slow`, `broken` and `garbage` misbehave; `sluggish` is a valid
session (that of `ada-token`) answered after 0.4 s on every call.

Besides the app detail, the workspace and the profile, it answers the two console routes whose
checks dify-stats asks about (app/http/console_guards.py) as Dify guards them: the session, then
the member's permission (Dify's role-based access control: a member `lacking` `app_monitor` is
refused the monitoring statistics, one lacking `app_create_and_management` every run route, with
Dify's 403), then the app (404) and its mode (404 naming the modes). It holds no runs, so what
it grants is empty. An app's mode is the one the account's `modes` give it; else, as a Dify
holding the demo's apps would say, `advanced-chat` for the demo's chat apps (app/demo.py: their
runs are of type `chat`), and `workflow` for any other app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.params import FromPath

from app.demo import demo_apps
from tests.live import serve


class Account(msgspec.Struct, frozen=True):
    tenant_id: str
    timezone: str
    apps: frozenset[str]
    forbidden_apps: frozenset[str] = frozenset()  # apps the member may not open (Dify's 403)
    modes: dict[str, str] = {}  # app id -> Dify's app mode (else DEMO_MODES, else `workflow`)
    lacking: frozenset[str] = frozenset()  # RBAC permissions Dify refuses this member


def _error(status: int, code: str, message: str) -> Response[dict[str, object]]:
    # Dify's error handler answers a 401 with a bearer challenge.
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else None
    return Response({"code": code, "message": message, "status": status}, status_code=status, headers=headers)


# Dify's bodies (werkzeug's Forbidden through Dify's handler; its AppNotFoundError).
FORBIDDEN = (
    403,
    "forbidden",
    "You don't have the permission to access the requested resource. It is either read-protected "
    "or not readable by the server.",
)
APP_NOT_FOUND = (404, "app_not_found", "App not found.")
DEMO_MODES = {app.app_id: "advanced-chat" if app.type == "chat" else "workflow" for app in demo_apps()}
MONITOR = "app_monitor"
MANAGE = "app_create_and_management"


SLUGGISH_S = 0.4


def app_mode(account: Account, app_id: str) -> str:
    return account.modes.get(app_id) or DEMO_MODES.get(app_id, "workflow")


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

    async def admit(
        request: Request[Any, Any, Any], app_id: str, permission: str | None, modes: tuple[str, ...] | None
    ) -> tuple[Account | None, Response[Any] | None]:
        """Dify's order: session, the member's permission, the app, the app's mode."""
        token, denied = session(request)
        if denied or token is None:
            return None, denied or _error(401, "unauthorized", "Invalid token.")
        if (odd := await misbehave(token)) is not None:
            return None, odd
        account = await answer_as(token)
        if permission in account.lacking or app_id in account.forbidden_apps:
            return None, _error(*FORBIDDEN)
        if app_id not in account.apps:
            return None, _error(*APP_NOT_FOUND)
        mode = app_mode(account, app_id)
        if modes is not None and mode not in modes:
            listed = ", ".join(repr(allowed) for allowed in modes)
            return None, _error(404, "app_not_found", f"App mode is not in the supported list: {{{listed}}}")
        return account, None

    @get("/console/api/apps/{app_id:str}")
    async def app_detail(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
        calls.append("app")
        account, refused = await admit(request, app_id, None, None)
        if refused or account is None:
            return refused or _error(*APP_NOT_FOUND)
        return Response({"id": app_id, "name": "demo", "mode": app_mode(account, app_id)})

    @get("/console/api/apps/{app_id:str}/workflow/statistics/daily-conversations")
    async def daily_runs(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
        calls.append("statistics")
        _, refused = await admit(request, app_id, MONITOR, None)
        return refused or Response({"data": []})

    @get("/console/api/apps/{app_id:str}/workflow-runs/{run_id:str}/node-executions")
    async def node_executions(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
        calls.append("node-executions")
        _, refused = await admit(request, app_id, MANAGE, ("advanced-chat", "workflow"))
        return refused or Response({"data": []})  # Dify: an empty list for a run it does not hold

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

    return Litestar(route_handlers=[app_detail, daily_runs, node_executions, workspace, profile])


@contextmanager
def serve_fake_dify(
    accounts: dict[str, Account], received: list[dict[str, str]] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Run the fake console on 127.0.0.1 on a free port; yields (base URL, call log). Each
    call's request headers are appended to `received` when given."""
    calls: list[str] = []
    with serve(build_fake_dify(accounts, calls, received)) as base_url:
        yield base_url, calls
