-- severity: error
-- For every session, user_messages + assistant_messages <= messages and active_seconds is never negative.
-- Other roles make up the rest of the messages; first_message_at is the smallest timestamp.

with session_activity as (
    select * from analytics.session_activity
),

final as (
    select * from session_activity
    where user_messages + assistant_messages > messages
        or active_seconds < 0
)

select * from final
