"""Marks the listings this run found unchanged as listed now.

dlt loads a project_listings row only for a listing that changed, so a night where nothing
changed loads nothing at all (dlt then skips its normalize and load work). The unchanged
listings' `listed_at` and `run_id` are set here instead, after the load and before the status
history, which reads this run's listings by `run_id`; `status` reads `listed_at`.
"""

from __future__ import annotations

from typing import Any

from cekura_sessions.destination.warehouse import as_warehouse
from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport


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
