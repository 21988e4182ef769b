-- severity: error
-- Every analytics.session_durations row has a (project_id, status) and no two rows share one.
-- Offending rows: every row whose key is NULL or shared with another row.

with keyed as (
    select
        *,
        count(*) over (partition by project_id, status) as rows_with_key,
    from analytics.session_durations
),

final as (
    select * from keyed
    where project_id is null or status is null
        or rows_with_key > 1
)

select * from final
