-- daily_completion_rates: sessions created and completed per project per local day.
-- Grain: one row per (project, day) that has sessions. Key: (project_id, day).
-- day is the DATE of created_at in the project's timezone, its name matched as the database
-- matches names (case aside, surrounding spaces trimmed); UTC where the project has none, an
-- empty one, one DuckDB (ICU) does not know (check daily_completion_rates_timezone_known lists
-- those), or is not in projects. Sessions whose
-- created_at is missing or unparsable have no day and are left out (check
-- sessions_created_at_not_null lists them). Deleted and unlisted projects are left out (sessions).

with sessions as (
    select * from analytics.sessions
    where created_at is not null
),

projects as (
    select * from staging.stg_projects
),

-- timezone() raises on a name ICU does not know, so only known names get through, looked up
-- by staging.zone_key (case aside, trimmed)
known_zones as (
    select
        staging.zone_key(name) as zone_key,
        min(name) as timezone,
    from pg_timezone_names()
    group by staging.zone_key(name)
),

project_zones as (
    select
        projects.project_id,
        known_zones.timezone,
    from projects
    inner join known_zones
        on staging.zone_key(projects.timezone) = known_zones.zone_key
),

local_days as (
    select
        sessions.project_id,
        timezone(coalesce(project_zones.timezone, 'UTC'), sessions.created_at)::date as day,
        sessions.status,
    from sessions
    left join project_zones
        on sessions.project_id = project_zones.project_id
),

counts as (
    select
        project_id,
        day,
        count(*) as sessions_total,
        count(*) filter (where status = 'completed') as sessions_completed,
    from local_days
    group by project_id, day
),

final as (
    select
        *,
        sessions_completed / nullif(sessions_total, 0)::double as completion_rate,
    from counts
)

select * from final
