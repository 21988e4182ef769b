"""The run ledger `cekura_raw.pipeline_runs`, written directly (not through dlt) so a run that is
killed stays visible as unfinished."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from cekura_sessions import settings
from cekura_sessions.destination.warehouse import as_warehouse
from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport

_TABLE = f"{contract.RAW_SCHEMA}.{settings.RUNS_TABLE}"

_DDL = f"""
create schema if not exists {contract.RAW_SCHEMA};
create table if not exists {_TABLE} (
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
alter table {_TABLE} add column if not exists sessions_listed bigint;
"""


def record_start(con: Any, report: RunReport) -> None:
    """A `running` row for this run (`con`: a DuckDB or psycopg2 connection, or a Warehouse)."""
    con = as_warehouse(con)
    con.execute(_DDL)
    con.execute(
        f"insert into {_TABLE} (run_id, started_at, status) values (?, ?, 'running')",
        [report.run_id, report.started_at],
    )


def record_finish(con: Any, report: RunReport, status: str, exit_code: int, error: str | None) -> None:
    """The run's outcome on its row: status succeeded, partial, failed (or interrupted)."""
    con = as_warehouse(con)
    con.execute(_DDL)
    failed = orjson.dumps({str(pid): why for pid, why in sorted(report.projects_failed.items())}).decode()
    con.execute(
        f"""
        update {_TABLE} set
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
