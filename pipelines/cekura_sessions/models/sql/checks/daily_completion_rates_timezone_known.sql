-- severity: warning
-- Every project's timezone is one the database knows (case and surrounding spaces aside); the projects listed count their days in UTC.

with projects as (
    select * from staging.stg_projects
    where regexp_replace(coalesce(timezone, ''), '^\s+|\s+$', '', 'g') <> ''
),

known_zones as (
    select distinct lower(name) as zone_key from pg_timezone_names()
),

final as (
    select projects.*
    from projects
    left join known_zones
        on lower(regexp_replace(projects.timezone, '^\s+|\s+$', '', 'g')) = known_zones.zone_key
    where known_zones.zone_key is null
)

select * from final
