"""What Dify's console checks before each of its routes we serve, beyond "may open this app".

Read in langgenius/dify (api/controllers/console/app/workflow_run.py at
0248bb0b857a60d3fdf53efb1892ff68bc2e863e, workflow_statistic.py and the `get_app_model` and
`rbac_permission_required` wraps of the same era): after the caller's session, Dify checks
- a permission on the app, when Dify enables its role-based access control (Enterprise's
  RBAC_ENABLED): the monitoring statistics need `app_monitor`, every run route (list, counts,
  detail, node executions, both advanced-chat routes) `app_create_and_management`; a member without
  it gets 403, whatever the app;
- then the app's mode: average interactions answer workflow apps only; the run list, counts,
  detail and node executions advanced-chat and workflow apps; the advanced-chat routes
  advanced-chat apps only. Any other app is a 404 `app_not_found` naming the modes.

The permission depends on roles, per-app grants and app ownership that only Dify knows, so it is
Dify that is asked: the same question, as a request to a Dify route guarded exactly like ours and
chosen to cost Dify next to nothing (one empty minute of statistics in 2000; the node executions
of the nil run, which Dify answers with an empty list), whose refusal is passed on as Dify sent
it. The mode comes with the app detail Dify already answers (`mode`), and is refused with Dify's
own body. A Dify without RBAC answers every probe, so there only app access and mode decide.
"""

from __future__ import annotations

from typing import Any

import msgspec

NIL_RUN = "00000000-0000-0000-0000-000000000000"


class DifyGuard(msgspec.Struct, frozen=True):
    """The checks Dify runs before one family of its console routes."""

    name: str
    # A Dify route under /console/api/apps/{app_id} carrying the same permission check, and the
    # parameters that make its answer empty and cheap.
    permission_path: str
    permission_params: tuple[tuple[str, str], ...]
    # The app modes Dify answers the routes for, in the order Dify declares them; None: any mode.
    modes: tuple[str, ...] | None

    def mode_refusal(self, mode: str | None) -> dict[str, Any] | None:
        """Dify's 404 for an app of another mode (`get_app_model`), or None. Dify formats the
        modes as a Python set, whose order varies between Dify processes; this is the declared
        order. An app detail without a mode (no Dify omits it) is not refused here."""
        if self.modes is None or mode is None or mode in self.modes:
            return None
        listed = ", ".join(repr(allowed) for allowed in self.modes)
        return {
            "code": "app_not_found",
            "message": f"App mode is not in the supported list: {{{listed}}}",
            "status": 404,
        }


_MONITOR_PROBE = (
    "/workflow/statistics/daily-conversations",
    (("start", "2000-01-01 00:00"), ("end", "2000-01-01 00:01")),
)
_RUNS_PROBE = (f"/workflow-runs/{NIL_RUN}/node-executions", ())

STATISTICS = DifyGuard("statistics", *_MONITOR_PROBE, modes=None)
AVERAGE_INTERACTIONS = DifyGuard("average-interactions", *_MONITOR_PROBE, modes=("workflow",))
WORKFLOW_RUNS = DifyGuard("workflow-runs", *_RUNS_PROBE, modes=("advanced-chat", "workflow"))
ADVANCED_CHAT_RUNS = DifyGuard("advanced-chat-runs", *_RUNS_PROBE, modes=("advanced-chat",))

# Every console route handler names its guard in litestar's `opt` under this key.
GUARD_OPTION = "dify_guard"
