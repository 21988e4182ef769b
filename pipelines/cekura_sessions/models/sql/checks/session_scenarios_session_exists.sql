-- severity: error
-- Every analytics.session_scenarios row points to a session in analytics.sessions.

with session_scenarios as (
    select * from analytics.session_scenarios
),

sessions as (
    select * from analytics.sessions
),

final as (
    select session_scenarios.*
    from session_scenarios
    left join sessions
        on session_scenarios.session_id = sessions.session_id
    where sessions.session_id is null
)

select * from final
