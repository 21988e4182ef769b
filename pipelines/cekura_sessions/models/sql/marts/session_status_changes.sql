-- session_status_changes: how long each session was seen in each status, across nights.
-- Grain: one row per (session, status period). Key: (session_id, observed_from).
-- observed_from is the first run that saw the session in this status (in this project);
-- observed_to is the run that saw the next status or the session's disappearance, NULL while
-- the status still holds. Observations that only moved updated_at fold into their period.
-- Unlike updated_at, which keeps only the latest change, this answers "how long did it sit in
-- pending", "was it failed before it completed", and "when did it vanish upstream".
-- Periods under a project that is not live (staging.stg_projects.is_live) are left out.

with observations as (
    select
        session_id,
        project_id,
        status,
        observed_at,
        is_deleted,
        lag(status) over by_session as previous_status,
        lag(project_id) over by_session as previous_project_id,
        lag(is_deleted) over by_session as previous_is_deleted,
    from staging.stg_session_status_history
    window by_session as (partition by session_id order by observed_at)
),

period_starts as (
    select *
    from observations
    where is_deleted
        or previous_is_deleted is null
        or previous_is_deleted
        or status is distinct from previous_status
        or project_id is distinct from previous_project_id
),

periods as (
    select
        session_id,
        project_id,
        status,
        is_deleted,
        observed_at as observed_from,
        lead(observed_at) over (partition by session_id order by observed_at) as observed_to,
    from period_starts
),

projects as (
    select * from staging.stg_projects
),

final as (
    select
        periods.session_id,
        periods.project_id,
        periods.status,
        periods.observed_from,
        periods.observed_to,
    from periods
    left join projects
        on periods.project_id = projects.project_id
    where not periods.is_deleted
        and projects.is_live is distinct from false
)

select * from final
