"""The run ledger `cekura_raw.pipeline_runs`, written directly (not through dlt) so a run that is
killed stays visible as unfinished."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import orjson

from cekura_sessions import settings
from cekura_sessions.destination.warehouse import as_warehouse
from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport

log = logging.getLogger(__name__)

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
    """A `running` row for this run (`con`: a DuckDB or psycopg2 connection, or a Warehouse);
    one warning when this run's clock is behind the last run's start (nothing the night does
    depends on it moving forward: run/history.py)."""
    con = as_warehouse(con)
    con.execute(_DDL)
    last = con.execute(f"select max(started_at) from {_TABLE}").fetchone()[0]
    if last is not None and last > report.started_at:
        log.warning("this machine's clock says %s, behind the last run's start (%s): the clock stepped back; "
                    "the night stays exact, but check the time sync", f"{report.started_at:%Y-%m-%d %H:%M:%S %Z}",
                    f"{last.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S UTC}")
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
