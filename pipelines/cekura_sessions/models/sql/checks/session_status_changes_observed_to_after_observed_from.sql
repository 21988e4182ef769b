-- severity: error
-- Every closed status period of a session ends after it starts (observed_to > observed_from).

with session_status_changes as (
    select * from analytics.session_status_changes
),

final as (
    select * from session_status_changes
    where observed_to <= observed_from
)

select * from final
