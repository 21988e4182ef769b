-- severity: error
-- Every analytics.sessions row has a session_id and no two rows share one.
-- Offending rows: every row whose key is NULL or shared with another row.

with keyed as (
    select
        *,
        count(*) over (partition by session_id) as rows_with_key,
    from analytics.sessions
),

final as (
    select * from keyed
    where session_id is null
        or rows_with_key > 1
)

select * from final
