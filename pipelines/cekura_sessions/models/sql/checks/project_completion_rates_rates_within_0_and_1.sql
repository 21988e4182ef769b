-- severity: error
-- Every project's completion_rate and terminal_completion_rate is within [0, 1], and NULL only where its denominator is 0.

with project_completion_rates as (
    select
        *,
        sessions_completed + sessions_failed + sessions_cancelled as sessions_terminal,
    from analytics.project_completion_rates
),

final as (
    select * from project_completion_rates
    where not coalesce(completion_rate between 0 and 1, sessions_total = 0)
        or not coalesce(terminal_completion_rate between 0 and 1, sessions_terminal = 0)
)

select * from final
