-- severity: error
-- Every analytics.session_scenarios row has a (session_id, position) and no two rows share one.
-- Offending rows: every row whose key is NULL or shared with another row.

with keyed as (
    select
        *,
        count(*) over (partition by session_id, position) as rows_with_key,
    from analytics.session_scenarios
),

final as (
    select * from keyed
    where session_id is null or position is null
        or rows_with_key > 1
)

select * from final
