-- Raw tables that staging reads, declared so the models build on a fresh database.
-- dlt creates these tables on its first load; it may never create one (a list that is always
-- empty makes no nested table, dlt issues #2390, #2964), so models.py runs this file before
-- staging. dlt reflects existing tables and only adds columns, so these coexist with its loads.
-- Keep in sync with docs/architecture.md, "Raw layout"; tests/test_models.py compares the two.

create schema if not exists cekura_raw;

create table if not exists cekura_raw.projects (
    id bigint,
    name text,
    organization_id bigint,
    organization_name text,
    timezone text,
    is_deleted boolean,
    created_at text,
    updated_at text,
);

create table if not exists cekura_raw.scenario_improvement_sessions (
    id bigint,
    title text,
    project bigint,
    status text,
    created_at text,
    updated_at text,
    message_count text,
    project_id bigint,
);

create table if not exists cekura_raw.scenario_improvement_sessions__scenario_ids (
    session_id bigint,
    project_id bigint,
    position bigint,
    value bigint,
);

-- written by pipeline history.py after each load (which runs this file to declare it), read by
-- stg_session_status_history
create table if not exists cekura_raw.session_status_history (
    session_id bigint not null,
    project_id bigint not null,
    status text,
    updated_at text,
    observed_at timestamptz not null,
    run_id text not null,
    is_deleted boolean not null,
);
