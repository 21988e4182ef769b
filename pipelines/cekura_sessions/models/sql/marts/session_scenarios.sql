-- session_scenarios: the scenarios each session works on, in list order.
-- Grain: one row per (session, list position); a scenario id repeated in one list gives one
-- row per position. Key: (session_id, position).
-- Only rows of a session in analytics.sessions, under the project it is listed under now: a
-- deleted or unlisted project's sessions leave, and a session that moved to another project
-- keeps no rows from before the move.

with scenario_ids as (
    select * from staging.stg_session_scenario_ids
),

sessions as (
    select * from analytics.sessions
),

final as (
    select
        scenario_ids.session_id,
        scenario_ids.project_id,
        scenario_ids.scenario_id::bigint as scenario_id,
        scenario_ids.position,
    from scenario_ids
    inner join sessions
        on scenario_ids.session_id = sessions.session_id
        and scenario_ids.project_id = sessions.project_id
)

select * from final
