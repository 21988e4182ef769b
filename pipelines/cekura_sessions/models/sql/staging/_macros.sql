-- iso_timestamp: ISO-8601 text as delivered -> TIMESTAMPTZ. With an offset it is cast as is;
-- without one it is read as UTC, never in the session's TimeZone; unparsable -> NULL.
-- Expects text already trimmed and upper-cased (staging does that in its source CTE).

create or replace macro staging.iso_timestamp(iso_text) as
    case
        when regexp_matches(iso_text, '[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$')
            then try_cast(iso_text as timestamptz)
        else timezone('UTC', try_cast(iso_text as timestamp))
    end;

-- zone_key: a time zone name as the database matches names: lower case, surrounding whitespace
-- trimmed (`america/new_york` and "Asia/Kolkata " are zones the database knows).

create or replace macro staging.zone_key(zone_name) as
    lower(regexp_replace(zone_name, '^\s+|\s+$', '', 'g'));
