-- The functions the models call whose SQL differs between engines, for DuckDB. The same names,
-- arguments and results are defined for PostgreSQL in postgres.sql; a model calls only these
-- and portable SQL, so one SELECT serves both.

-- iso_timestamp: ISO-8601 text as delivered -> TIMESTAMPTZ. With an offset it is cast as is;
-- without one it is read as UTC, never in the session's TimeZone; unparsable -> NULL. Only text
-- that starts with a year is read (neither engine then takes words such as 'epoch' or 'now').
-- Expects text already trimmed and upper-cased (staging does that in its source CTE).

create or replace macro staging.iso_timestamp(iso_text) as
    case
        when not regexp_matches(iso_text, '^[0-9]{4}-')
            then null
        when regexp_matches(iso_text, '[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$')
            then try_cast(iso_text as timestamptz)
        else timezone('UTC', try_cast(iso_text as timestamp))
    end;

-- zone_key: a time zone name as the database matches names: lower case, surrounding whitespace
-- trimmed (`america/new_york` and "Asia/Kolkata " are zones the database knows).

create or replace macro staging.zone_key(zone_name) as
    lower(regexp_replace(zone_name, '^\s+|\s+$', '', 'g'));

-- integer_or_null: text holding a plain integer (sign allowed, surrounding spaces trimmed) that
-- fits INTEGER -> INTEGER; anything else -> NULL (a bare cast would round '12.5' to 13 and read
-- '1e3' as 1000).

create or replace macro staging.integer_or_null(value_text) as
    case
        when regexp_full_match(trim(value_text), '[+-]?[0-9]+')
            then try_cast(trim(value_text) as integer)
    end;

-- seconds_between: from one TIMESTAMPTZ to another, in seconds (DOUBLE, microsecond precision).

create or replace macro staging.seconds_between(started_at, ended_at) as
    ((epoch_us(ended_at) - epoch_us(started_at)) / 1e6)::double;
