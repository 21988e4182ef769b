-- The functions the models call whose SQL differs between engines, for PostgreSQL: the same
-- names, arguments and results as duckdb.sql (which says what each one means).

create or replace function staging.iso_timestamp(iso_text text) returns timestamptz
language plpgsql stable as $$
begin
    if iso_text !~ '^[0-9]{4}-' then
        return null;
    end if;
    if iso_text ~ '[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$' then
        return iso_text::timestamptz;
    end if;
    return iso_text::timestamp at time zone 'UTC';
exception when others then
    -- PostgreSQL has no try_cast: text the regular expressions let through can still be no
    -- date (month 13), and that is NULL here as in DuckDB
    return null;
end;
$$;

create or replace function staging.zone_key(zone_name text) returns text
language sql immutable as $$
    select lower(regexp_replace(zone_name, '^\s+|\s+$', '', 'g'))
$$;

create or replace function staging.integer_or_null(value_text text) returns integer
language sql immutable as $$
    select case
        when trim(value_text) ~ '^[+-]?[0-9]{1,18}$'
            and trim(value_text)::bigint between -2147483648 and 2147483647
            then trim(value_text)::integer
    end
$$;

create or replace function staging.seconds_between(started_at timestamptz, ended_at timestamptz)
returns double precision
language sql immutable as $$
    select extract(epoch from (ended_at - started_at))::double precision
$$;
