-- project_completion_rates: session counts by status and completion rates per project.
-- Grain: one row per live project (staging.stg_projects.is_live: not deleted, still listed by
-- /user/v1/projects/), including projects with no sessions (counts 0, rates NULL). Key:
-- project_id. A status outside the enum (staging.stg_session_statuses, from the row contract) or
-- NULL is counted in sessions_total and sessions_other, so the six counts add up to sessions_total.

with projects as (
    select * from staging.stg_projects
    where is_live
),

statuses as (
    select * from staging.stg_session_statuses
),

sessions as (
    select
        sessions.*,
        statuses.status is null as is_other_status,
    from analytics.sessions as sessions
    left join statuses
        on sessions.status = statuses.status
),

status_counts as (
    select
        project_id,
        count(*) as sessions_total,
        count(*) filter (where status = 'completed') as sessions_completed,
        count(*) filter (where status = 'failed') as sessions_failed,
        count(*) filter (where status = 'cancelled') as sessions_cancelled,
        count(*) filter (where status = 'in_progress') as sessions_in_progress,
        count(*) filter (where status = 'pending') as sessions_pending,
        count(*) filter (where is_other_status) as sessions_other,
    from sessions
    group by project_id
),

counts as (
    select
        projects.project_id,
        projects.project_name,
        coalesce(status_counts.sessions_total, 0) as sessions_total,
        coalesce(status_counts.sessions_completed, 0) as sessions_completed,
        coalesce(status_counts.sessions_failed, 0) as sessions_failed,
        coalesce(status_counts.sessions_cancelled, 0) as sessions_cancelled,
        coalesce(status_counts.sessions_in_progress, 0) as sessions_in_progress,
        coalesce(status_counts.sessions_pending, 0) as sessions_pending,
        coalesce(status_counts.sessions_other, 0) as sessions_other,
    from projects
    left join status_counts
        on projects.project_id = status_counts.project_id
),

final as (
    select
        *,
        -- DuckDB's `/` gives inf (not an error or NULL) on a zero divisor: nullif is required
        sessions_completed / nullif(sessions_total, 0)::double as completion_rate,
        sessions_completed
            / nullif(sessions_completed + sessions_failed + sessions_cancelled, 0)::double
            as terminal_completion_rate,
    from counts
)

select * from final
