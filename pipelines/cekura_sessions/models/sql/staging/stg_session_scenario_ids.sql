-- stg_session_scenario_ids: each session's scenario_ids list, one row per element.
-- Grain: one row per (session, list position). Key: (session_id, position).
-- A session whose list is NULL or empty has no rows; a repeated id keeps one row per position.

with source as (
    select
        session_id,
        project_id,
        position,
        value,
    from cekura_raw.scenario_improvement_sessions__scenario_ids
),

final as (
    select
        session_id,
        project_id,
        position,
        value as scenario_id,
    from source
)

select * from final
