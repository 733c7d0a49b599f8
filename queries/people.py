"""Who ran a run or a node: Dify's `accounts` and `end_users`, read from Dify's PostgreSQL.

One statement per answer, whatever its number of runs or nodes: every id it names, accounts and
end users together. The ids come from the store (never from a request) and are checked to be
UUIDs by the app first; they are bound as arrays.
"""

from __future__ import annotations

from queries.scope import Query


def people(account_ids: list[str], end_user_ids: list[str]) -> Query:
    """Rows (role, id, name, email, type, is_anonymous, session_id) of the accounts and end users
    with these ids; an id that is neither has no row."""
    sql = """
SELECT 'account' AS role, CAST(id AS text) AS id, name, email,
       CAST(NULL AS text) AS type, CAST(NULL AS boolean) AS is_anonymous, CAST(NULL AS text) AS session_id
FROM accounts
WHERE id = ANY(CAST(%(account_ids)s AS uuid[]))
UNION ALL
SELECT 'end_user' AS role, CAST(id AS text) AS id, name, CAST(NULL AS text) AS email, type, is_anonymous,
       session_id
FROM end_users
WHERE id = ANY(CAST(%(end_user_ids)s AS uuid[]))
ORDER BY role, id
LIMIT %(limit)s"""
    params: dict[str, object] = {
        "account_ids": list(account_ids),
        "end_user_ids": list(end_user_ids),
        "limit": len(account_ids) + len(end_user_ids),
    }
    return Query(sql, params)
