-- stg_session_details: the newest detail read of each session, renamed and cast.
-- Grain: one row per session whose detail was read. Key: session_id.
-- session_updated_at is the listed updated_at the detail was read for, parsed like the
-- sessions' timestamps (no offset: UTC; unparsable -> NULL).

with source as (
    select
        session_id,
        upper(trim(session_updated_at)) as session_updated_at_text,
        created_by,
        read_at,
    from cekura_raw.scenario_improvement_session_details
),

final as (
    select
        session_id,
        staging.iso_timestamp(session_updated_at_text) as session_updated_at,
        created_by,
        read_at,
    from source
)

select * from final
