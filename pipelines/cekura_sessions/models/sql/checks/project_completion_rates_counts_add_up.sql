-- severity: error
-- For every project, sessions_total = completed + failed + cancelled + in_progress + pending + other.

with project_completion_rates as (
    select * from analytics.project_completion_rates
),

final as (
    select * from project_completion_rates
    where sessions_total is distinct from
        sessions_completed
        + sessions_failed
        + sessions_cancelled
        + sessions_in_progress
        + sessions_pending
        + sessions_other
)

select * from final
