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

-- Dify's `workflow_node_executions` (one row per node execution, updated in place), `accounts`
-- and `end_users` (who ran a run or node), with the columns and indexes of Dify's migrations.
CREATE TABLE IF NOT EXISTS workflow_node_executions (
    id                  uuid             NOT NULL,
    tenant_id           uuid             NOT NULL,
    app_id              uuid             NOT NULL,
    workflow_id         uuid             NOT NULL,
    triggered_from      varchar(255)     NOT NULL,
    workflow_run_id     uuid,
    index               integer          NOT NULL,
    predecessor_node_id varchar(255),
    node_execution_id   varchar(255),
    node_id             varchar(255)     NOT NULL,
    node_type           varchar(255)     NOT NULL,
    title               varchar(255)     NOT NULL,
    inputs              text,
    process_data        text,
    outputs             text,
    status              varchar(255)     NOT NULL,
    error               text,
    elapsed_time        double precision NOT NULL DEFAULT 0,
    execution_metadata  text,
    created_at          timestamp        NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
    created_by_role     varchar(255)     NOT NULL,
    created_by          uuid             NOT NULL,
    finished_at         timestamp,
    CONSTRAINT workflow_node_execution_pkey PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS workflow_node_execution_workflow_run_idx
    ON workflow_node_executions (tenant_id, app_id, workflow_id, triggered_from, workflow_run_id);
CREATE INDEX IF NOT EXISTS workflow_node_execution_node_run_idx
    ON workflow_node_executions (tenant_id, app_id, workflow_id, triggered_from, node_id);
CREATE INDEX IF NOT EXISTS workflow_node_execution_id_idx
    ON workflow_node_executions (tenant_id, app_id, workflow_id, triggered_from, node_execution_id);

CREATE TABLE IF NOT EXISTS accounts (
    id                 uuid         NOT NULL,
    name               varchar(255) NOT NULL,
    email              varchar(255) NOT NULL,
    password           varchar(255),
    password_salt      varchar(255),
    avatar             varchar(255),
    interface_language varchar(255),
    interface_theme    varchar(255),
    timezone           varchar(255),
    last_login_at      timestamp,
    last_login_ip      varchar(255),
    status             varchar(16)  NOT NULL DEFAULT 'active',
    initialized_at     timestamp,
    created_at         timestamp    NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
    updated_at         timestamp    NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
    CONSTRAINT account_pkey PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS account_email_idx ON accounts (email);

CREATE TABLE IF NOT EXISTS end_users (
    id               uuid         NOT NULL,
    tenant_id        uuid         NOT NULL,
    app_id           uuid,
    type             varchar(255) NOT NULL,
    external_user_id varchar(255),
    name             varchar(255),
    is_anonymous     boolean      NOT NULL DEFAULT true,
    session_id       varchar(255) NOT NULL,
    created_at       timestamp    NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
    updated_at       timestamp    NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
    CONSTRAINT end_user_pkey PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS end_user_session_id_idx ON end_users (session_id, type);
CREATE INDEX IF NOT EXISTS end_user_tenant_session_id_idx ON end_users (tenant_id, session_id, type);

-- Dify's `messages` (one row per chat message; a chatflow run's message names the run in
-- `workflow_run_id`), with the columns, types and indexes of Dify's model and migrations.
CREATE TABLE IF NOT EXISTS messages (
    id                        uuid             NOT NULL,
    app_id                    uuid             NOT NULL,
    model_provider            varchar(255),
    model_id                  varchar(255),
    override_model_configs    text,
    conversation_id           uuid             NOT NULL,
    inputs                    json             NOT NULL,
    query                     text             NOT NULL,
    message                   json             NOT NULL,
    message_tokens            integer          NOT NULL DEFAULT 0,
    message_unit_price        numeric(10, 4)   NOT NULL,
    message_price_unit        numeric(10, 7)   NOT NULL DEFAULT 0.001,
    answer                    text             NOT NULL,
    answer_tokens             integer          NOT NULL DEFAULT 0,
    answer_unit_price         numeric(10, 4)   NOT NULL,
    answer_price_unit         numeric(10, 7)   NOT NULL DEFAULT 0.001,
    parent_message_id         uuid,
    provider_response_latency double precision NOT NULL DEFAULT 0,
    total_price               numeric(10, 7),
    currency                  varchar(255)     NOT NULL,
    status                    varchar(255)     NOT NULL DEFAULT 'normal',
    error                     text,
    message_metadata          text,
    invoke_from               varchar(255),
    from_source               varchar(255)     NOT NULL,
    from_end_user_id          uuid,
    from_account_id           uuid,
    created_at                timestamp        NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
    updated_at                timestamp        NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
    agent_based               boolean          NOT NULL DEFAULT false,
    workflow_run_id           uuid,
    CONSTRAINT message_pkey PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS message_app_id_idx ON messages (app_id, created_at);
CREATE INDEX IF NOT EXISTS message_conversation_id_idx ON messages (conversation_id);
CREATE INDEX IF NOT EXISTS message_end_user_idx ON messages (app_id, from_source, from_end_user_id);
CREATE INDEX IF NOT EXISTS message_account_idx ON messages (app_id, from_source, from_account_id);
CREATE INDEX IF NOT EXISTS message_workflow_run_id_idx ON messages (conversation_id, workflow_run_id);
CREATE INDEX IF NOT EXISTS message_created_at_idx ON messages (created_at);
