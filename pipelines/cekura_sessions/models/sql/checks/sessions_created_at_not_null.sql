-- severity: warning
-- Every session has a parsable created_at; sessions without one have no day in daily_completion_rates.

with sessions as (
    select * from analytics.sessions
),

final as (
    select * from sessions
    where created_at is null
)

select * from final
