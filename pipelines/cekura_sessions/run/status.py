"""What `status` reports, read from the database: the run ledger's recent runs, each project's
last listing, the raw tables' row counts, and the verdict on them. Rows and states, not text:
cli/commands.py prints them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cekura_sessions import settings
from cekura_sessions.destination.warehouse import DUCKDB, Warehouse, as_warehouse
from cekura_sessions.extract import contract

_RAW = contract.RAW_SCHEMA
_RUNS = f"{_RAW}.{settings.RUNS_TABLE}"


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    finished_at: datetime
    status: str  # succeeded | partial | failed
    exit_code: int | None
    error: str | None


def recent_runs(con: Any, limit: int) -> list[tuple]:
    """The newest `limit` runs, newest first: (run_id, started_at, finished_at, status, exit_code,
    projects_ok, projects_failed (a count), sessions_listed (NULL in a ledger written before the
    column), sessions_loaded, http_requests, http_retries, error). [] when no run was recorded."""
    con = as_warehouse(con)
    if limit <= 0 or not _has_ledger(con):
        return []
    listed = "sessions_listed" if "sessions_listed" in _ledger_columns(con) else "null"
    return con.execute(
        f"""
        select run_id, started_at, finished_at, status, exit_code, projects_ok,
               {_FAILED_COUNT[con.dialect]} as projects_failed,
               {listed} as sessions_listed, sessions_loaded, http_requests, http_retries, error
        from {_RUNS}
        order by started_at desc
        limit ?
        """,
        [limit],
    ).fetchall()


def project_freshness(con: Any) -> list[tuple]:
    """(project_id, name, listed_at, sessions_listed, is_live) per project ever listed, stalest
    first. is_live: the project is neither deleted upstream nor dropped from /user/v1/projects/
    (its rows stay in the raw tables either way, and it leaves the analytics models)."""
    con = as_warehouse(con)
    if not con.has_table(_RAW, contract.PROJECT_LISTINGS_TABLE) or not con.has_table(_RAW, contract.PROJECTS_TABLE):
        return []
    return con.execute(
        f"""
        select l.project_id, p.name, l.listed_at, l.sessions_listed, {_is_live(con, "p")} as is_live
        from {_RAW}.{contract.PROJECT_LISTINGS_TABLE} as l
        left join {_RAW}.{contract.PROJECTS_TABLE} as p on p.id = l.project_id
        order by l.listed_at, l.project_id
        """
    ).fetchall()


def projects_gone(con: Any) -> list[int]:
    """Ids of the stored projects deleted upstream or no longer listed: kept in the raw tables,
    left out of analytics (listed or not before)."""
    con = as_warehouse(con)
    if not con.has_table(_RAW, contract.PROJECTS_TABLE):
        return []
    rows = con.execute(
        f"select id from {_RAW}.{contract.PROJECTS_TABLE} as p where not {_is_live(con, 'p')} order by id"
    ).fetchall()
    return [project_id for (project_id,) in rows]


def _is_live(con: Warehouse, alias: str) -> str:
    """contract.project_is_live, on a file from before is_listed too."""
    return contract.project_is_live(alias, "is_listed" in con.columns(_RAW, contract.PROJECTS_TABLE))


def row_counts(con: Any) -> dict[str, int]:
    """Rows of each raw table by name; 0 for a table not created yet."""
    warehouse = as_warehouse(con)
    counts = {}
    for table in (contract.PROJECTS_TABLE, contract.SESSIONS_TABLE, contract.SCENARIO_IDS_TABLE,
                  contract.STATUS_HISTORY_TABLE, contract.REJECTED_ROWS_TABLE):
        has = warehouse.has_table(_RAW, table)
        counts[table] = warehouse.execute(f"select count(*) from {_RAW}.{table}").fetchone()[0] if has else 0
    return counts


def newest_loaded(con: Any) -> datetime | None:
    """When the newest run that loaded data (succeeded or partial) finished; None if none did."""
    con = as_warehouse(con)
    if not _has_ledger(con):
        return None
    return con.execute(
        f"select max(finished_at) from {_RUNS} where status in ('succeeded', 'partial')"
    ).fetchone()[0]


def newest_finished(con: Any) -> FinishedRun | None:
    """The newest run that finished, whatever its outcome (a run still going, or killed, has not)."""
    con = as_warehouse(con)
    if not _has_ledger(con):
        return None
    row = con.execute(
        f"""
        select run_id, finished_at, status, exit_code, error from {_RUNS}
        where finished_at is not null order by finished_at desc limit 1
        """
    ).fetchone()
    return FinishedRun(*row) if row else None


def newest_unfinished(con: Any) -> tuple[str, datetime] | None:
    """(run_id, started_at) of the newest run that started, when it never finished: killed or
    crashed, unless a run is going on now (the caller checks the run lock first). None otherwise."""
    con = as_warehouse(con)
    if not _has_ledger(con):
        return None
    row = con.execute(f"select run_id, started_at, finished_at from {_RUNS} order by started_at desc limit 1").fetchone()
    return (row[0], row[1]) if row and row[2] is None else None


def verdict(loaded_at: datetime | None, last: FinishedRun | None, max_age: timedelta, now: datetime,
            unfinished: tuple[str, datetime] | None = None) -> str:
    """The state `status` reports (a name of exit_codes.STATUS) when the file could be read:
    stale outranks the rest, since then nothing recent is loaded at all; a newest run that died
    (`unfinished`, see newest_unfinished) outranks how the run before it ended."""
    if loaded_at is None or now - loaded_at > max_age:
        return "stale"
    if unfinished is not None:
        return "unfinished"
    if last is None or last.status == "succeeded":
        return "ok"
    return "partial" if last.exit_code == 1 else "failed"


# how many projects failed: the keys of the ledger's projects_failed JSON object
_FAILED_COUNT = {
    DUCKDB: "json_array_length(json_keys(coalesce(projects_failed, '{}')))",
    "postgres": "(select count(*) from json_object_keys(coalesce(projects_failed, '{}')))",
}


def _has_ledger(con: Warehouse) -> bool:
    return bool(_ledger_columns(con))


def _ledger_columns(con: Warehouse) -> set[str]:
    return set(con.columns(_RAW, settings.RUNS_TABLE))


def datasets(con: Any) -> list[str]:
    """The datasets the database holds: the schemas with a run ledger (`pipeline_runs`), sorted."""
    return sorted(schema for (schema,) in as_warehouse(con).execute(
        "select table_schema from information_schema.tables where table_name = ?", [settings.RUNS_TABLE]).fetchall())
