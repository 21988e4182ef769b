"""The tables the run writes itself, beside dlt's, each in the raw schema: the run ledger
(`pipeline_runs`), the unchanged listings' marks (`project_listings`), and the status history
(`session_status_history`).

- The ledger is written directly (not through dlt), so a run that is killed stays visible as
  unfinished: a `running` row at the start (record_start), its outcome at the end (record_finish).
- dlt loads a project_listings row only for a listing that changed, so a night where nothing
  changed loads nothing at all (dlt then skips its normalize and load work). The unchanged
  listings' `listed_at` and `run_id` are set here instead (mark_listed), after the load and before
  the status history, which reads this run's listings by `run_id`; `status` reads `listed_at`.
- The status history keeps every observed change of a session (status, updated_at, project)
  across nights (record_changes): written after each load by comparing the sessions just loaded
  with the latest observation of each. The comparison is idempotent, so a run killed between its
  load and this step is caught up by the next run. Only projects whose listing succeeded in this
  run can record a disappearance.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import orjson

from cekura_sessions import settings
from cekura_sessions.destination.warehouse import Warehouse, as_warehouse
from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport

log = logging.getLogger(__name__)

# --- the run ledger ---------------------------------------------------------------------------------

_RUNS = f"{contract.RAW_SCHEMA}.{settings.RUNS_TABLE}"

_RUNS_DDL = f"""
create schema if not exists {contract.RAW_SCHEMA};
create table if not exists {_RUNS} (
    run_id text primary key,
    started_at timestamptz not null,
    finished_at timestamptz,
    status text not null,
    exit_code integer,
    projects_ok integer,
    projects_failed json,
    sessions_loaded bigint,
    http_requests bigint,
    http_retries bigint,
    error text
);
-- added later: how many sessions the run's listings held (sessions_loaded is what it wrote,
-- 0 on a night when nothing changed)
alter table {_RUNS} add column if not exists sessions_listed bigint;
"""


def record_start(con: Any, report: RunReport) -> None:
    """A `running` row for this run (`con`: a DuckDB or psycopg2 connection, or a Warehouse);
    one warning when this run's clock is behind the last run's start (nothing the night does
    depends on it moving forward: record_changes below)."""
    con = as_warehouse(con)
    con.execute(_RUNS_DDL)
    last = con.execute(f"select max(started_at) from {_RUNS}").fetchone()[0]
    if last is not None and last > report.started_at:
        log.warning("this machine's clock says %s, behind the last run's start (%s): the clock stepped back; "
                    "the night stays exact, but check the time sync", f"{report.started_at:%Y-%m-%d %H:%M:%S %Z}",
                    f"{last.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S UTC}")
    con.execute(
        f"insert into {_RUNS} (run_id, started_at, status) values (?, ?, 'running')",
        [report.run_id, report.started_at],
    )


def record_finish(con: Any, report: RunReport, status: str, exit_code: int, error: str | None) -> None:
    """The run's outcome on its row: status succeeded, partial, failed (or interrupted)."""
    con = as_warehouse(con)
    con.execute(_RUNS_DDL)
    failed = orjson.dumps({str(pid): why for pid, why in sorted(report.projects_failed.items())}).decode()
    con.execute(
        f"""
        update {_RUNS} set
            finished_at = ?, status = ?, exit_code = ?, projects_ok = ?, projects_failed = ?,
            sessions_listed = ?, sessions_loaded = ?, http_requests = ?, http_retries = ?, error = ?
        where run_id = ?
        """,
        [
            datetime.now(timezone.utc), status, exit_code, len(report.projects_ok), failed,
            report.sessions_listed, report.sessions_written, report.stats.requests, report.stats.retries, error,
            report.run_id,
        ],
    )


# --- the unchanged listings -------------------------------------------------------------------------


def mark_listed(con: Any, report: RunReport) -> None:
    """`con`: a DuckDB or psycopg2 connection, or a Warehouse."""
    if not report.projects_unchanged:
        return
    as_warehouse(con).execute(
        f"""
        update {contract.RAW_SCHEMA}.{contract.PROJECT_LISTINGS_TABLE}
        set listed_at = ?, run_id = ?
        where project_id in (select unnest(cast(? as bigint[])))
        """,
        [report.started_at, report.run_id, report.projects_unchanged],
    )


# --- the status history -----------------------------------------------------------------------------

_RAW = contract.RAW_SCHEMA
_HISTORY = f"{_RAW}.{contract.STATUS_HISTORY_TABLE}"

# what the history was last compared after (one row): the loads dlt had recorded, counted, not
# the newest load id: a load id is a timestamp, and after the clock steps back the newest load
# has a smaller one, so "newer than" would skip that night's changes for good
_SYNCED = f"{_RAW}.session_status_history_synced"

_SYNCED_DDL = f"create table if not exists {_SYNCED} (load_id text)"

# SQL both engines read (no qualify, no trailing commas): parameters are, in order, the run id
# of listed_projects, then the observation's time, run id and number. The latest observation
# is the one of the highest number (rows from before numbers were kept: the latest time), never
# the latest time alone: a night whose clock is behind the last one's still comes after it.
_SYNC = f"""
insert into {_HISTORY} (session_id, project_id, status, updated_at, observed_at, run_id, is_deleted, observation)
with ranked as (
    select
        *,
        row_number() over (
            partition by session_id order by coalesce(observation, 0) desc, observed_at desc
        ) as newest_first
    from {_HISTORY}
),

latest as (
    select * from ranked where newest_first = 1
),

listed_projects as (
    select project_id
    from {_RAW}.{contract.PROJECT_LISTINGS_TABLE}
    where run_id = ?
),

current_sessions as (
    select
        id as session_id,
        project_id,
        status,
        updated_at
    from {_RAW}.{contract.SESSIONS_TABLE}
    where project_id in (select project_id from listed_projects)
),

changed as (
    select
        c.session_id,
        c.project_id,
        c.status,
        c.updated_at,
        false as is_deleted
    from current_sessions as c
    left join latest as l on l.session_id = c.session_id
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
        true as is_deleted
    from latest as l
    where not l.is_deleted
        and l.project_id in (select project_id from listed_projects)
        and not exists (select 1 from {_RAW}.{contract.SESSIONS_TABLE} as s where s.id = l.session_id)
)

select
    session_id, project_id, status, updated_at, cast(? as timestamptz), cast(? as text), is_deleted, cast(? as bigint)
from (select * from changed union all select * from vanished) as observed
"""


def record_changes(con: Any, report: RunReport) -> int:
    """Append this run's observed changes; returns how many were recorded. Skipped when no
    load has happened since the last comparison: the sessions are then as last compared
    (a quiet night at 1,000,000 sessions saves 0.7 s). `con`: a DuckDB or psycopg2
    connection, or a Warehouse."""
    warehouse = as_warehouse(con)
    warehouse.execute(contract.raw_tables_ddl())  # the history table is declared with the models' inputs
    warehouse.execute(_SYNCED_DDL)
    if not _has(warehouse, contract.SESSIONS_TABLE) or not _has(warehouse, contract.PROJECT_LISTINGS_TABLE):
        return 0
    latest_load = None  # tables declared for the models, never loaded by dlt
    if _has(warehouse, "_dlt_loads"):
        loads = warehouse.execute(f"select count(*) from {_RAW}._dlt_loads").fetchone()[0]
        latest_load = f"loads:{loads}"  # grows with every load, whatever the load ids say
    synced = warehouse.execute(f"select max(load_id) from {_SYNCED}").fetchone()[0]
    if latest_load is not None and latest_load == synced:
        return 0
    observation = warehouse.execute(f"select coalesce(max(observation), 0) + 1 from {_HISTORY}").fetchone()[0]
    recorded = warehouse.changed_rows(_SYNC, [report.run_id, report.started_at, report.run_id, observation])
    with warehouse.transaction():
        warehouse.execute(f"delete from {_SYNCED}")
        warehouse.execute(f"insert into {_SYNCED} values (?)", [latest_load])
    return recorded


def _has(warehouse: Warehouse, table: str) -> bool:
    return warehouse.has_table(_RAW, table)
