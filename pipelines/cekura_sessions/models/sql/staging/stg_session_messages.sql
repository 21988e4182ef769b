-- stg_session_messages: the messages of each session's newest detail read.
-- Grain: one row per (session, position). Key: (session_id, position).
-- `content` is left out on purpose: no model reads the text (it may hold customers' data, and
-- is NULL unless a run was given --conversation-text); it stays in cekura_raw alone.

with source as (
    select
        session_id,
        position,
        role,
        message_at,
        content_chars,
        tool_calls,
    from cekura_raw.scenario_improvement_session_messages
),

final as (
    select
        session_id,
        position,
        role,
        message_at,
        content_chars,
        coalesce(tool_calls, 0) as tool_calls,
    from source
)

select * from final
