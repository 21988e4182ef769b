-- severity: warning
-- Every session's status is one of the API's enum: pending, in_progress, completed, cancelled, failed.
-- Other statuses are kept as delivered and counted as sessions_other; this lists them.

with sessions as (
    select * from analytics.sessions
),

final as (
    select * from sessions
    where status is null
        or status not in ('pending', 'in_progress', 'completed', 'cancelled', 'failed')
)

select * from final
