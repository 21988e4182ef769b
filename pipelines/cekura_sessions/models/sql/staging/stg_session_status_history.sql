-- stg_session_status_history: every observed change of a session, as recorded after each load.
-- Grain: one row per (session, observation). Key: (session_id, observed_at).
-- is_deleted marks the observation that the session no longer appears in its project's listing.

with source as (
    select
        session_id,
        project_id,
        status,
        observed_at,
        run_id,
        is_deleted,
    from cekura_raw.session_status_history
),

final as (
    select * from source
)

select * from final
