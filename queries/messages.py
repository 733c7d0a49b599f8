"""The chat message of each chatflow run: Dify's `messages`, read from Dify's PostgreSQL.

Dify's advanced-chat run list names, for each run, the message whose `workflow_run_id` is the run
(of the same app) and that message's conversation. One statement per page, whatever its number
of runs: the run ids are bound as one array. Dify creates a chatflow turn's message just before
the run it starts, so a message is looked for within `slack` of its run's created time: the page's
created times bound `created_at`, which Dify's index `(app_id, created_at)` reads as one range
instead of every message the app ever had. Where a run has several messages (Dify reads "the
first" without an order), the earliest created, then the smallest id, is the one answered.
"""

from __future__ import annotations

from datetime import datetime

from queries.scope import Query


def run_messages(app_id: str, run_ids: list[str], since: datetime, until: datetime) -> Query:
    """Rows (workflow_run_id, message_id, conversation_id): at most one per run of `run_ids` of
    the app, among the messages created in [since, until) (naive UTC, as Dify stores them)."""
    sql = """
SELECT DISTINCT ON (workflow_run_id)
       CAST(workflow_run_id AS text) AS workflow_run_id,
       CAST(id AS text) AS message_id,
       CAST(conversation_id AS text) AS conversation_id
FROM messages
WHERE app_id = CAST(%(app_id)s AS uuid)
  AND created_at >= %(since)s AND created_at < %(until)s
  AND workflow_run_id = ANY(CAST(%(run_ids)s AS uuid[]))
ORDER BY workflow_run_id, created_at, id
LIMIT %(limit)s"""
    params: dict[str, object] = {
        "app_id": app_id,
        "since": since,
        "until": until,
        "run_ids": list(run_ids),
        "limit": len(run_ids),
    }
    return Query(sql, params)
