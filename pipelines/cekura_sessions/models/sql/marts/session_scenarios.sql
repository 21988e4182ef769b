-- session_scenarios: the scenarios each session works on, in list order.
-- Grain: one row per (session, list position); a scenario id repeated in one list gives one
-- row per position. Key: (session_id, position).

create or replace table analytics.session_scenarios as

with scenario_ids as (
    select * from staging.stg_session_scenario_ids
),

final as (
    select
        session_id,
        project_id,
        scenario_id::bigint as scenario_id,
        position,
    from scenario_ids
)

select * from final
