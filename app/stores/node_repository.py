"""A run's node executions over the configured sources: Dify's DifyAPIWorkflowNodeExecutionRepository
`get_executions_by_workflow_run`, exact, bounded, with cut values flagged and people named.

- The run is looked up first, in the source that owns its created time (as the run detail is):
  no such run of this tenant and app is a 404; its created time and, once it has finished, its
  last write time bound the node statements' `__time__` (queries/node_executions.py).
- A run read from the LogStore has its node executions in the node LogStore (optional: absent,
  the answer is a 503 naming it, app/stores/node_logstore.py); a run read from Dify's `workflow_runs`
  has them in Dify's `workflow_node_executions`.
- Keyset pages of up to NODE_PAGE, at most STATS_NODE_EXECUTIONS_MAX node executions per answer:
  beyond it the answer holds the first ones and says it has more (`has_more`, X-Has-More).
- Who ran each node is read from Dify's database in one statement per answer (app/stores/people.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import msgspec
import structlog

from app.config import Settings
from app.core import answers
from app.stores.backend import BackendFailed
from app.stores.node_logstore import NodeLogstore
from app.stores.people import PeopleReader
from app.stores.sources import Source
from queries.node_executions import NODE_PAGE, NodeKey, NodeScope, node_page, run_span
from queries.rows import NodeExecutionRow, RunSpanRow
from schemas.nodes import NodeExecutionsAnswer
from schemas.requests import RunDetailRequest

log = structlog.get_logger("dify_stats.node_repository")
# A finished run's node executions are settled (cached STATS_SETTLED_TTL) once its last version
# is this old: versions written just before it may become readable on SLS a little later.
SETTLED_AFTER_S = 60
LOGGED_CUT_IDS = 20  # node execution ids named in one log line of cut values


class NodeExecutionsRead(msgspec.Struct, frozen=True):
    """A run's node executions as answered, and whether they can no longer change."""

    answer: NodeExecutionsAnswer
    settled: bool


class NodeExecutionRepository:
    def __init__(
        self,
        sources: Sequence[Source],
        settings: Settings,
        node_logstore: NodeLogstore,
        people: PeopleReader,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = tuple(sources)
        self.settings = settings
        self.node_logstore = node_logstore
        self.people = people
        self.wall_clock = wall_clock

    async def read(self, request: RunDetailRequest) -> NodeExecutionsRead | None:
        """The run's node executions, or None when it is not a run of this tenant and app."""
        for source in self.sources:  # newest created times first
            scope = source.scope(request.tenant_id, request.app_id, None, None, None)
            if scope is None:
                continue
            [span] = await source.backend.fetch(run_span(scope, request.run_id), RunSpanRow)
            if not span.versions:
                continue
            node_scope = self._node_scope(source, request, span)
            rows, has_more = await self._rows(source, node_scope)
            people = await self.people.read((row.created_by_role, row.created_by) for row in rows)
            field_bytes = self.settings.sls_field_bytes if scope.dialect == "sls" else None
            data = [answers.node_execution(row, people, field_bytes) for row in rows]
            cut = [item for item in data if item.truncated_fields]
            if cut:
                log.warning(
                    "node_fields_truncated",
                    run_id=request.run_id,
                    node_executions=len(cut),
                    node_execution_ids=[item.id for item in cut[:LOGGED_CUT_IDS]],
                    fields=sorted({name for item in cut for name in item.truncated_fields}),
                    source=source.name,
                )
            if has_more:
                log.warning("node_executions_capped", run_id=request.run_id, shown=len(data))
            settled = bool(span.finished) and (
                span.last_written_s is None or self.wall_clock() - span.last_written_s >= SETTLED_AFTER_S
            )
            return NodeExecutionsRead(NodeExecutionsAnswer(data=data, has_more=has_more), settled)
        return None

    def _node_scope(self, source: Source, request: RunDetailRequest, span: RunSpanRow) -> NodeScope:
        """Where the run's node executions are, and the run's write-time bounds: from its created
        time (less the slack), and, once finished (shortcut plan: finished is final), up to its
        last write (plus the slack)."""
        if source.plan == "workflow_runs":
            return NodeScope(
                tenant_id=request.tenant_id,
                app_id=request.app_id,
                run_id=request.run_id,
                plan="workflow_runs",
            )
        slack = source.time_slack_s
        finished = source.plan == "shortcut" and bool(span.finished) and span.last_written_s is not None
        return NodeScope(
            tenant_id=request.tenant_id,
            app_id=request.app_id,
            run_id=request.run_id,
            dialect=source.backend.dialect,
            plan=source.plan,
            min_time_s=None if span.created_us is None else int(span.created_us) // 1_000_000 - slack,
            max_time_s=int(span.last_written_s) + slack
            if finished and span.last_written_s is not None
            else None,
        )

    async def _rows(self, source: Source, scope: NodeScope) -> tuple[list[NodeExecutionRow], bool]:
        """Up to STATS_NODE_EXECUTIONS_MAX rows in keyset pages, and whether there are more. Each
        page asks for one row beyond what it keeps: a short page is the last, with no statement
        more to learn it."""
        if scope.plan != "workflow_runs":
            self.node_logstore.require()
        most = self.settings.node_executions_max
        rows: list[NodeExecutionRow] = []
        after = None
        while True:
            keep = min(NODE_PAGE, most - len(rows))
            try:
                page = await source.backend.fetch(node_page(scope, after, keep + 1), NodeExecutionRow)
            except BackendFailed as error:
                if (
                    scope.plan != "workflow_runs"
                    and error.__cause__
                    and self.node_logstore.missing(error.__cause__)
                ):
                    self.node_logstore.require()
                raise
            rows += page[:keep]
            if len(page) <= keep:
                return rows, False
            if len(rows) >= most:
                return rows, True
            last = rows[-1]
            after = NodeKey(created_key=last.created_key, index=last.index, id=last.id)
