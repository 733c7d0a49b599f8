-- Dify's own `workflow_runs` table, as Dify's models and migrations create it (one mutable row per
-- run, UUID columns, created_at/finished_at as naive UTC timestamps).
-- Used only where dify-stats owns the database: the embedded demo and the tests. Against a real
-- Dify database the service only reads (its connections are read-only) and never runs this file.
CREATE TABLE IF NOT EXISTS workflow_runs (
    id               uuid             NOT NULL,
    tenant_id        uuid             NOT NULL,
    app_id           uuid             NOT NULL,
    workflow_id      uuid             NOT NULL,
    type             varchar(255)     NOT NULL,
    triggered_from   varchar(255)     NOT NULL,
    version          varchar(255)     NOT NULL,
    graph            text,
    inputs           text,
    status           varchar(255)     NOT NULL,
    outputs          text             DEFAULT '{}',
    error            text,
    elapsed_time     double precision NOT NULL DEFAULT 0,
    total_tokens     bigint           NOT NULL DEFAULT 0,
    total_steps      integer          DEFAULT 0,
    created_by_role  varchar(255)     NOT NULL,
    created_by       uuid             NOT NULL,
    created_at       timestamp        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at      timestamp,
    exceptions_count integer          DEFAULT 0,
    CONSTRAINT workflow_run_pkey PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS workflow_run_triggerd_from_idx ON workflow_runs (tenant_id, app_id, triggered_from);
CREATE INDEX IF NOT EXISTS workflow_run_created_at_id_idx ON workflow_runs (created_at, id);
