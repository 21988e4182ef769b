-- stg_sessions: Cekura scenario-improvement sessions as loaded, renamed and cast.
-- Grain: one row per session (the current row per session id). Key: session_id.
-- project_id is the project the session was listed under; reported_project_id is the
-- session's own `project` field as delivered (may be NULL).
-- Timestamps arrive as ISO-8601 text with any offset (or none: read as UTC); unparsable -> NULL.
-- message_count arrives as text (a spec oddity); only a plain integer that fits INTEGER is
-- kept, anything else -> NULL (a bare try_cast would round '12.5' to 13 and read '1e3' as 1000).

with source as (
    select
        id,
        project_id,
        project,
        title,
        status,
        upper(trim(created_at)) as created_at_text,
        upper(trim(updated_at)) as updated_at_text,
        message_count,
    from cekura_raw.scenario_improvement_sessions
),

final as (
    select
        id as session_id,
        project_id,
        project as reported_project_id,
        title,
        status,
        staging.iso_timestamp(created_at_text) as created_at,
        staging.iso_timestamp(updated_at_text) as updated_at,
        staging.integer_or_null(message_count) as message_count,
    from source
)

select * from final
