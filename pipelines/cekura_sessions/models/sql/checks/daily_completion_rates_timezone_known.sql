-- severity: warning
-- Every project's timezone is one the database knows (case and surrounding spaces aside); the projects listed count their days in UTC.

with projects as (
    select * from staging.stg_projects
    where staging.zone_key(coalesce(timezone, '')) <> ''
),

known_zones as (
    select distinct staging.zone_key(name) as zone_key from pg_timezone_names()
),

final as (
    select projects.*
    from projects
    left join known_zones
        on staging.zone_key(projects.timezone) = known_zones.zone_key
    where known_zones.zone_key is null
)

select * from final
