-- severity: error
-- Every session's project_id (the project it was listed under) is a project in cekura_raw.projects.

with sessions as (
    select * from analytics.sessions
),

projects as (
    select * from staging.stg_projects
),

final as (
    select sessions.*
    from sessions
    left join projects
        on sessions.project_id = projects.project_id
    where projects.project_id is null
)

select * from final
