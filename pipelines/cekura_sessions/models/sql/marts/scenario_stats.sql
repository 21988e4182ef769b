-- scenario_stats: how often each scenario is worked on and how those sessions end, per project.
-- Grain: one row per (project, scenario). Key: (project_id, scenario_id).
-- sessions counts DISTINCT sessions: a scenario id repeated in one list counts once.
-- Only rows pointing to an existing session count (check session_scenarios_session_exists);
-- NULL list elements are left out (check session_scenarios_scenario_id_not_null).

with session_scenarios as (
    select * from analytics.session_scenarios
    where scenario_id is not null
),

sessions as (
    select * from analytics.sessions
),

joined as (
    select
        session_scenarios.project_id,
        session_scenarios.scenario_id,
        sessions.session_id,
        sessions.status,
        sessions.created_at,
    from session_scenarios
    inner join sessions
        on session_scenarios.session_id = sessions.session_id
),

-- a scenario id repeated in one list counts once (cheaper than two count(distinct)s)
distinct_sessions as (
    select distinct * from joined
),

counts as (
    select
        project_id,
        scenario_id,
        count(*) as sessions,
        count(*) filter (where status = 'completed') as sessions_completed,
        max(created_at) as last_session_at,
    from distinct_sessions
    group by project_id, scenario_id
),

final as (
    select
        project_id,
        scenario_id,
        sessions,
        sessions_completed,
        sessions_completed / nullif(sessions, 0)::double as completion_rate,
        last_session_at,
    from counts
)

select * from final
