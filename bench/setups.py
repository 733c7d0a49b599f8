"""The two index set-ups the benchmark measures on the same data.

- `covering`: the project's own set-up (queries/schema.sql): the statistics index carries every
  column the statistics read, so PostgreSQL answers them from the index alone.
- `sls_like`: what SLS effectively offers a statement: two plain b-tree indexes, one on the
  fields every statistic filters on and one on a run's versions; every other column is read
  from the table's (wide) rows. The headline runs here.

The SLS-like database is a copy of the loaded one (CREATE DATABASE ... TEMPLATE), made once per
dataset and reused while its bench_meta matches. app/embedded.ensure_schema re-creates the
covering index on whatever database it runs on, so it is never called on the copy, and the
indexes are checked (and put right) every time the copy is used.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg

Setup = Literal["sls_like", "covering"]

SLS_LIKE_INDEXES = {
    "workflow_execution_app_time_plain": (
        "CREATE INDEX workflow_execution_app_time_plain "
        "ON workflow_execution (tenant_id, app_id, triggered_from, __time__)"
    ),
    "workflow_execution_run": "CREATE INDEX workflow_execution_run ON workflow_execution (id, log_version)",
}


def _meta(url: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT runs, now_s FROM bench_meta").fetchone()


def _database_url(admin_url: str, name: str) -> str:
    return admin_url.replace("/postgres?", f"/{name}?")


def database(admin_url: str, name: str) -> str:
    """URL of the database `name` on the benchmark's server, created when missing."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            admin.execute(f"CREATE DATABASE {name}")
    return _database_url(admin_url, name)


def sls_like_database(admin_url: str, source: str) -> str:
    """URL of `<source>_sls`: the source database's data with only SLS_LIKE_INDEXES on
    workflow_execution. Copied from `source` when missing or when it holds another dataset."""
    name = f"{source}_sls"
    url = _database_url(admin_url, name)
    wanted = _meta(_database_url(admin_url, source))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is not None and _meta(url) != wanted:
            admin.execute(f"DROP DATABASE {name}")
            exists = None
        if exists is None:
            # FILE_COPY: a plain copy of the files after a checkpoint, instead of writing every
            # block of a 1 M-run database through the WAL.
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {source} STRATEGY FILE_COPY")
            print(f"  copied {source} to {name}", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        keep_only_sls_like_indexes(conn)
        conn.execute("VACUUM ANALYZE workflow_execution")
    return url


def keep_only_sls_like_indexes(conn: psycopg.Connection[Any]) -> None:
    """Drops every other index on workflow_execution (the covering one above all) and creates the
    missing ones of SLS_LIKE_INDEXES."""
    present = {
        str(row[0])
        for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'workflow_execution'")
    }
    for index in present - SLS_LIKE_INDEXES.keys():
        conn.execute(f'DROP INDEX "{index}"')
    for index, statement in SLS_LIKE_INDEXES.items():
        if index not in present:
            conn.execute(statement)
