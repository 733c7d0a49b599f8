-- The LogStore `workflow_execution` as a PostgreSQL table (the embedded default, tests, bench).
-- SLS indexes text fields as text and `long` fields as bigint; the columns here are typed alike.
CREATE TABLE IF NOT EXISTS workflow_execution (
    __time__         bigint           NOT NULL,
    id               text             NOT NULL,
    log_version      bigint           NOT NULL,
    tenant_id        text             NOT NULL,
    app_id           text             NOT NULL,
    workflow_id      text             NOT NULL,
    triggered_from   text             NOT NULL,
    type             text             NOT NULL,
    version          text             NOT NULL,
    graph            text             NOT NULL DEFAULT '',
    inputs           text             NOT NULL DEFAULT '',
    outputs          text             NOT NULL DEFAULT '',
    status           text             NOT NULL,
    error_message    text             NOT NULL DEFAULT '',
    total_tokens     bigint           NOT NULL DEFAULT 0,
    total_steps      bigint           NOT NULL DEFAULT 0,
    exceptions_count bigint           NOT NULL DEFAULT 0,
    elapsed_time     double precision,
    created_by_role  text             NOT NULL,
    created_by       text             NOT NULL,
    created_at       text             NOT NULL DEFAULT '',
    started_at       text             NOT NULL,
    finished_at      text             NOT NULL DEFAULT ''
);

-- SLS indexes every field. The stand-in keeps two indexes that serve what every query filters on:
-- one app's rows of one trigger source from a write time on (statistics, counts, run list), and
-- one run's versions (detail, the run list's second step).
-- The first also carries every column the statistics read, so PostgreSQL answers them from the
-- index alone instead of fetching wide heap rows (graph, inputs, outputs): measured on 200 k runs,
-- 90-day daily runs 321 -> 176 ms, 30-day 67 -> 52 ms. Index-only scans need a vacuumed table,
-- so loaders run VACUUM ANALYZE.
DROP INDEX IF EXISTS workflow_execution_app_time;  -- its uncovered predecessor
DROP INDEX IF EXISTS workflow_execution_app_time_covering;  -- its predecessor without elapsed_time
CREATE INDEX IF NOT EXISTS workflow_execution_app_time_statistics
    ON workflow_execution (tenant_id, app_id, triggered_from, __time__)
    INCLUDE (id, log_version, created_by, created_at, started_at, finished_at, status, total_tokens,
             elapsed_time);
CREATE INDEX IF NOT EXISTS workflow_execution_run
    ON workflow_execution (id, log_version);

-- The LogStore `workflow_node_execution` (Dify's node executions: one row per state change of a
-- node execution, as for runs). `index` is a long field; every other field is text but the
-- numbers SLS indexes as long/double.
CREATE TABLE IF NOT EXISTS workflow_node_execution (
    __time__            bigint           NOT NULL,
    id                  text             NOT NULL,
    log_version         bigint           NOT NULL,
    tenant_id           text             NOT NULL,
    app_id              text             NOT NULL,
    workflow_id         text             NOT NULL,
    triggered_from      text             NOT NULL,
    workflow_run_id     text             NOT NULL DEFAULT '',
    "index"             bigint           NOT NULL,
    predecessor_node_id text             NOT NULL DEFAULT '',
    node_execution_id   text             NOT NULL DEFAULT '',
    node_id             text             NOT NULL,
    node_type           text             NOT NULL,
    title               text             NOT NULL DEFAULT '',
    inputs              text             NOT NULL DEFAULT '',
    process_data        text             NOT NULL DEFAULT '',
    outputs             text             NOT NULL DEFAULT '',
    status              text             NOT NULL,
    error               text             NOT NULL DEFAULT '',
    elapsed_time        double precision,
    execution_metadata  text             NOT NULL DEFAULT '',
    created_at          text             NOT NULL DEFAULT '',
    created_by_role     text             NOT NULL,
    created_by          text             NOT NULL,
    finished_at         text             NOT NULL DEFAULT ''
);

-- One plain index, on what every node statement filters on: one run's node executions of one
-- app, from a write time on (the SLS-like set-up of the benchmark keeps exactly this one).
CREATE INDEX IF NOT EXISTS workflow_node_execution_run_time
    ON workflow_node_execution (tenant_id, app_id, workflow_run_id, __time__);
