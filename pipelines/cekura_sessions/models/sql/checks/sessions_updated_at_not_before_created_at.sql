-- severity: warning
-- No session was updated before it was created (clock skew upstream); such sessions have a NULL duration_seconds.

with sessions as (
    select * from analytics.sessions
),

final as (
    select * from sessions
    where updated_at < created_at
)

select * from final
