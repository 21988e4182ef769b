-- severity: error
-- Every analytics.scenario_stats row has a (project_id, scenario_id) and no two rows share one.
-- Offending rows: every row whose key is NULL or shared with another row.

with keyed as (
    select
        *,
        count(*) over (partition by project_id, scenario_id) as rows_with_key,
    from analytics.scenario_stats
),

final as (
    select * from keyed
    where project_id is null or scenario_id is null
        or rows_with_key > 1
)

select * from final
