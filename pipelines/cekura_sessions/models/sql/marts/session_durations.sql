-- session_durations: how long terminal sessions took, per project and terminal status.
-- Grain: one row per (project, terminal status) that has sessions. Key: (project_id, status).
-- sessions counts every session; the duration aggregates leave out NULL duration_seconds
-- (missing timestamps, clock skew), so they are NULL where no session has a duration.
-- Percentiles are continuous (quantile_cont, linear interpolation). Deleted and unlisted projects
-- are left out (sessions).

with terminal_sessions as (
    select * from analytics.sessions
    where is_terminal
),

final as (
    select
        project_id,
        status,
        count(*) as sessions,
        avg(duration_seconds) as avg_seconds,
        quantile_cont(duration_seconds, 0.5) as p50_seconds,
        quantile_cont(duration_seconds, 0.9) as p90_seconds,
        max(duration_seconds) as max_seconds,
    from terminal_sessions
    group by project_id, status
)

select * from final
