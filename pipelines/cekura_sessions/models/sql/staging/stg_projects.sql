-- stg_projects: Cekura projects as loaded, renamed and cast; deleted and unlisted projects
-- included. is_listed is false once /user/v1/projects/ no longer returns the project (NULL:
-- loaded before that was recorded, counts as listed).
-- is_live is the one definition of a project the models count: not deleted (is_deleted NULL
-- counts as not deleted) and still listed (is_listed NULL counts as listed). A project that is
-- not live keeps its raw rows and leaves every analytics model.
-- Grain: one row per project listed by /user/v1/projects/. Key: project_id.
-- Timestamps arrive as ISO-8601 text with any offset (or none: read as UTC); unparsable -> NULL.

with source as (
    select
        id,
        name,
        organization_id,
        organization_name,
        timezone,
        is_deleted,
        is_listed,
        upper(trim(created_at)) as created_at_text,
        upper(trim(updated_at)) as updated_at_text,
    from cekura_raw.projects
),

final as (
    select
        id as project_id,
        name as project_name,
        organization_id,
        organization_name,
        timezone,
        is_deleted,
        is_listed,
        is_deleted is distinct from true and is_listed is distinct from false as is_live,
        staging.iso_timestamp(created_at_text) as created_at,
        staging.iso_timestamp(updated_at_text) as updated_at,
    from source
)

select * from final
