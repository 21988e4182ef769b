"""Marks the listings this run found unchanged as listed now.

dlt loads a project_listings row only for a listing that changed, so a night where nothing
changed loads nothing at all (dlt then skips its normalize and load work). The unchanged
listings' `listed_at` and `run_id` are set here instead, after the load and before the status
history, which reads this run's listings by `run_id`; `status` reads `listed_at`.
"""

from __future__ import annotations

import duckdb

from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport


def mark_listed(con: duckdb.DuckDBPyConnection, report: RunReport) -> None:
    if not report.projects_unchanged:
        return
    con.execute(
        f"""
        update {contract.RAW_SCHEMA}.{contract.PROJECT_LISTINGS_TABLE}
        set listed_at = $listed_at, run_id = $run_id
        where project_id in (select unnest($project_ids::bigint[]))
        """,
        {"listed_at": report.started_at, "run_id": report.run_id, "project_ids": report.projects_unchanged},
    )
