-- project_activity: what happens inside each project's sessions, from their details.
-- Grain: one row per project in project_completion_rates (projects without sessions or details
-- included: counts 0, medians NULL). Key: project_id.
-- A session awaits its detail when no detail was read for its current updated_at (a detail that
-- answered 404 included: none was read). Percentiles are continuous (quantile_cont), NULLs left out.

with projects as (
    select project_id from analytics.project_completion_rates
),

activity as (
    select
        project_id,
        count(*) as sessions_with_details,
        quantile_cont(messages, 0.5) as median_messages,
        quantile_cont(active_seconds, 0.5) as median_active_seconds,
        quantile_cont(first_response_seconds, 0.9) as p90_first_response_seconds,
    from analytics.session_activity
    group by project_id
),

awaiting as (
    select
        sessions.project_id,
        count(*) as sessions_awaiting_details,
    from analytics.sessions as sessions
    left join staging.stg_session_details as details
        on details.session_id = sessions.session_id
        and details.session_updated_at = sessions.updated_at
    where details.session_id is null
    group by sessions.project_id
),

final as (
    select
        projects.project_id,
        coalesce(activity.sessions_with_details, 0) as sessions_with_details,
        coalesce(awaiting.sessions_awaiting_details, 0) as sessions_awaiting_details,
        activity.median_messages,
        activity.median_active_seconds,
        activity.p90_first_response_seconds,
    from projects
    left join activity on activity.project_id = projects.project_id
    left join awaiting on awaiting.project_id = projects.project_id
)

select * from final
