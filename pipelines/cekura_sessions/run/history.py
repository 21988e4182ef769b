"""Status history: every observed change of a session (status, updated_at, project), kept across
nights in `cekura_raw.session_status_history`.

Written after each load by comparing the sessions just loaded with the latest observation of each.
The comparison is idempotent, so a run killed between its load and this step is caught up by
the next run. Only projects whose listing succeeded in this run can record a disappearance.
"""

from __future__ import annotations

import duckdb

from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport

_RAW = contract.RAW_SCHEMA
_HISTORY = f"{_RAW}.{contract.STATUS_HISTORY_TABLE}"

# the dlt load the history was last compared after (one row)
_SYNCED = f"{_RAW}.session_status_history_synced"

_SYNCED_DDL = f"create table if not exists {_SYNCED} (load_id text)"

_SYNC = f"""
insert into {_HISTORY}
with latest as (
    select *
    from {_HISTORY}
    qualify row_number() over (partition by session_id order by observed_at desc) = 1
),

listed_projects as (
    select project_id
    from {_RAW}.{contract.PROJECT_LISTINGS_TABLE}
    where run_id = $run_id
),

current_sessions as (
    select
        id as session_id,
        project_id,
        status,
        updated_at,
    from {_RAW}.{contract.SESSIONS_TABLE}
    where project_id in (select project_id from listed_projects)
),

changed as (
    select
        c.session_id,
        c.project_id,
        c.status,
        c.updated_at,
        false as is_deleted,
    from current_sessions as c
    left join latest as l using (session_id)
    where l.session_id is null
        or l.is_deleted
        or l.status is distinct from c.status
        or l.updated_at is distinct from c.updated_at
        or l.project_id is distinct from c.project_id
),

vanished as (
    select
        l.session_id,
        l.project_id,
        l.status,
        l.updated_at,
        true as is_deleted,
    from latest as l
    where not l.is_deleted
        and l.project_id in (select project_id from listed_projects)
        and l.session_id not in (select id from {_RAW}.{contract.SESSIONS_TABLE})
)

select session_id, project_id, status, updated_at, $observed_at, $run_id, is_deleted
from (select * from changed union all select * from vanished)
"""


def record_changes(con: duckdb.DuckDBPyConnection, report: RunReport) -> int:
    """Append this run's observed changes; returns how many were recorded. Skipped when no
    load has happened since the last comparison: the sessions are then as last compared
    (a quiet night at 1,000,000 sessions saves 0.7 s)."""
    con.execute(contract.raw_tables_ddl())  # the history table is declared with the models' inputs
    con.execute(_SYNCED_DDL)
    if not _table_exists(con, contract.SESSIONS_TABLE) or not _table_exists(con, contract.PROJECT_LISTINGS_TABLE):
        return 0
    try:
        latest_load = con.execute(f"select max(load_id) from {_RAW}._dlt_loads").fetchone()[0]
    except duckdb.CatalogException:  # tables declared for the models, never loaded by dlt
        latest_load = None
    synced = con.execute(f"select max(load_id) from {_SYNCED}").fetchone()[0]
    if latest_load is not None and latest_load == synced:
        return 0
    con.execute(_SYNC, {"run_id": report.run_id, "observed_at": report.started_at})
    recorded = con.fetchone()[0]
    con.execute(f"delete from {_SYNCED}; insert into {_SYNCED} values (?)", [latest_load])
    return recorded


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [_RAW, table],
    ).fetchone()
    return bool(found and found[0])
