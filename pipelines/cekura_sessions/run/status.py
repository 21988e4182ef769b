"""What `status` reports, read from the database: the run ledger's recent runs, each
project's last listing, the raw tables' row counts. Rows, not text: cli/commands.py prints them."""

from __future__ import annotations

from datetime import datetime

import duckdb

from cekura_sessions import settings
from cekura_sessions.extract import contract

_RAW = contract.RAW_SCHEMA


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int) -> list[tuple]:
    try:
        return con.execute(
            f"""
            select run_id, started_at, finished_at, status, exit_code, projects_ok,
                   json_array_length(json_keys(coalesce(projects_failed, '{{}}'))) as projects_failed,
                   sessions_loaded, http_requests, http_retries, error
            from {_RAW}.{settings.RUNS_TABLE}
            order by started_at desc
            limit ?
            """,
            [limit],
        ).fetchall()
    except duckdb.CatalogException:
        return []


def project_freshness(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    try:
        return con.execute(
            f"""
            select l.project_id, p.name, l.listed_at, l.sessions_listed
            from {_RAW}.{contract.PROJECT_LISTINGS_TABLE} as l
            left join {_RAW}.{contract.PROJECTS_TABLE} as p on p.id = l.project_id
            order by l.listed_at, l.project_id
            """
        ).fetchall()
    except duckdb.CatalogException:
        return []


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = {}
    for table in (contract.PROJECTS_TABLE, contract.SESSIONS_TABLE, contract.SCENARIO_IDS_TABLE,
                  contract.STATUS_HISTORY_TABLE, contract.REJECTED_ROWS_TABLE):
        try:
            counts[table] = con.execute(f"select count(*) from {_RAW}.{table}").fetchone()[0]
        except duckdb.CatalogException:
            counts[table] = 0
    return counts


def newest_success(con: duckdb.DuckDBPyConnection) -> datetime | None:
    return con.execute(
        f"select max(finished_at) from {_RAW}.{settings.RUNS_TABLE} where status = 'succeeded'"
    ).fetchone()[0]
