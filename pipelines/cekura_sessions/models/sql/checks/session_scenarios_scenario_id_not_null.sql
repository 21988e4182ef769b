-- severity: warning
-- Every element of a session's scenario_ids list is a scenario id (NULL elements are left out of scenario_stats).

with session_scenarios as (
    select * from analytics.session_scenarios
),

final as (
    select * from session_scenarios
    where scenario_id is null
)

select * from final
