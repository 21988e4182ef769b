-- session_activity: what happens inside a session, from its newest detail read.
-- Grain: one row per session that exists upstream (analytics.sessions) and whose detail has
-- been read (the newest detail read, even while a newer one awaits). Key: session_id.
-- first_response_seconds runs from the first user message (by position) to the first assistant
-- message at a later position; NULL when either is missing or has no timestamp. active_seconds
-- is last minus first message_at; NULL with fewer than two timestamps.

with sessions as (
    select session_id, project_id from analytics.sessions
),

details as (
    select * from staging.stg_session_details
),

messages as (
    select * from staging.stg_session_messages
),

counts as (
    select
        session_id,
        count(*) as messages,
        count(case when role = 'user' then 1 end) as user_messages,
        count(case when role = 'assistant' then 1 end) as assistant_messages,
        sum(tool_calls) as tool_calls,
        min(message_at) as first_message_at,
        max(message_at) as last_message_at,
        count(message_at) as timestamps,
    from messages
    group by session_id
),

first_user as (
    select session_id, min(position) as position
    from messages
    where role = 'user'
    group by session_id
),

first_answer as (
    select
        first_user.session_id,
        min(answers.position) as position,
    from first_user
    inner join messages as answers
        on answers.session_id = first_user.session_id
        and answers.role = 'assistant'
        and answers.position > first_user.position
    group by first_user.session_id
),

first_response as (
    select
        first_user.session_id,
        staging.seconds_between(asked.message_at, answered.message_at) as first_response_seconds,
    from first_user
    inner join first_answer on first_answer.session_id = first_user.session_id
    inner join messages as asked
        on asked.session_id = first_user.session_id and asked.position = first_user.position
    inner join messages as answered
        on answered.session_id = first_answer.session_id and answered.position = first_answer.position
),

final as (
    select
        sessions.session_id,
        sessions.project_id,
        coalesce(counts.messages, 0) as messages,
        coalesce(counts.user_messages, 0) as user_messages,
        coalesce(counts.assistant_messages, 0) as assistant_messages,
        cast(coalesce(counts.tool_calls, 0) as bigint) as tool_calls,
        counts.first_message_at,
        counts.last_message_at,
        case
            when counts.timestamps >= 2
                then staging.seconds_between(counts.first_message_at, counts.last_message_at)
        end as active_seconds,
        first_response.first_response_seconds,
        details.created_by,
    from sessions
    inner join details on details.session_id = sessions.session_id
    left join counts on counts.session_id = sessions.session_id
    left join first_response on first_response.session_id = sessions.session_id
)

select * from final
