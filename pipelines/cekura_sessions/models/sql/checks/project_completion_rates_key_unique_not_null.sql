-- severity: error
-- Every analytics.project_completion_rates row has a project_id and no two rows share one.
-- Offending rows: every row whose key is NULL or shared with another row.

with keyed as (
    select
        *,
        count(*) over (partition by project_id) as rows_with_key,
    from analytics.project_completion_rates
),

final as (
    select * from keyed
    where project_id is null
        or rows_with_key > 1
)

select * from final
