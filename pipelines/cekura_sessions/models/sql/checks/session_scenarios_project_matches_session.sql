-- severity: error
-- Every analytics.session_scenarios row carries the same project_id as its session.

with session_scenarios as (
    select * from analytics.session_scenarios
),

sessions as (
    select * from analytics.sessions
),

final as (
    select
        session_scenarios.*,
        sessions.project_id as session_project_id,
    from session_scenarios
    inner join sessions
        on session_scenarios.session_id = sessions.session_id
    where session_scenarios.project_id is distinct from sessions.project_id
)

select * from final
