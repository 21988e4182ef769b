-- severity: error
-- Every (project, scenario)'s completion_rate is within [0, 1] and not NULL (each row has sessions).

with scenario_stats as (
    select * from analytics.scenario_stats
),

final as (
    select * from scenario_stats
    where not coalesce(completion_rate between 0 and 1, false)
)

select * from final
