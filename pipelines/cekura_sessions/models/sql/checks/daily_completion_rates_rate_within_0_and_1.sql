-- severity: error
-- Every (project, day)'s completion_rate is within [0, 1] and not NULL (each row has sessions).

with daily_completion_rates as (
    select * from analytics.daily_completion_rates
),

final as (
    select * from daily_completion_rates
    where not coalesce(completion_rate between 0 and 1, false)
)

select * from final
