-- sessions: every scenario-improvement session that exists upstream, with its project's name,
-- its scenario count and its duration.
-- Grain: one row per session. Key: session_id.
-- A project that is not live (staging.stg_projects.is_live: deleted upstream or no longer listed)
-- takes its sessions out of this model, and so out of every model built on it; raw keeps them. A
-- session listed under a project that /user/v1/projects/ never returned (asked for by id) stays.
-- is_terminal: the status is terminal in the row contract (staging.stg_session_statuses).
-- duration_seconds is NULL where either timestamp is NULL or updated_at < created_at (clock skew;
-- the check sessions_updated_at_not_before_created_at lists those sessions).

with sessions as (
    select * from staging.stg_sessions
),

projects as (
    select * from staging.stg_projects
),

statuses as (
    select * from staging.stg_session_statuses
),

-- counted under the project the session is listed under now (a moved session's old rows aside)
scenario_counts as (
    select
        session_id,
        project_id,
        count(*) as scenario_count,
    from staging.stg_session_scenario_ids
    group by session_id, project_id
),

final as (
    select
        sessions.session_id,
        sessions.project_id,
        projects.project_name,
        sessions.title,
        sessions.status,
        sessions.created_at,
        sessions.updated_at,
        sessions.message_count,
        coalesce(scenario_counts.scenario_count, 0) as scenario_count,
        case
            when sessions.updated_at >= sessions.created_at
                then staging.seconds_between(sessions.created_at, sessions.updated_at)
        end as duration_seconds,
        coalesce(statuses.is_terminal, false) as is_terminal,
    from sessions
    left join projects
        on sessions.project_id = projects.project_id
    left join statuses
        on sessions.status = statuses.status
    left join scenario_counts
        on sessions.session_id = scenario_counts.session_id
        and sessions.project_id = scenario_counts.project_id
    where projects.is_live is distinct from false
)

select * from final
