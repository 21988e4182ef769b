"""How each table merges and what deletes rows, in one place (dlt table hints).

A project's listing is the unit of replacement (dlt `merge`, `delete-insert`): when a listing
loads, every row of its project in the sessions and scenario-id tables is replaced by it, so a
session that vanished upstream goes, and a session that moved to another project leaves its
old one. A failed project's rows are not touched. A project whose listing became empty is
cleared by a tombstone row (dlt `hard_delete`, extract/convert.py tombstones).
"""

from __future__ import annotations

from typing import Any

import dlt

from cekura_sessions.extract import contract

_MERGE = {"disposition": "merge", "strategy": "delete-insert"}


def _replace_listed_projects(row_key: str) -> dict[str, str]:
    """Every loaded project's rows are replaced as a whole, and a session that moved to another
    project leaves its old one. Written as one IN over a UNION ALL, the rows staged and the
    stored rows of the staged projects, which both engines plan as hash joins whatever their
    memory settings: dlt's default for primary_key plus merge_key (one EXISTS with an OR) ran
    as a nested loop in DuckDB (minutes and GBs at 200,000 sessions), and `a IN (...) OR b IN
    (...)` as an unhashed subplan in PostgreSQL at its default work_mem (over 11 minutes)."""
    return {
        **_MERGE,
        "destination_scope": (
            f"{row_key} IN (SELECT {row_key} FROM {{staging_table}}"
            f" UNION ALL SELECT stored.{row_key} FROM {{table}} AS stored"
            f" INNER JOIN (SELECT DISTINCT project_id FROM {{staging_table}}) AS staged"
            f" ON stored.project_id = staged.project_id)"
        ),
    }


# the source never stages a session twice (extract/batch.py sets repeats aside), so dlt's
# merge inserts without its ROW_NUMBER() dedup window (0.4 s of a 0.9 s load at 200,000 sessions)
_UNIQUE_IN_STAGING = {"x-stage-data-deduplicated": True}

_TOMBSTONE = {contract.TOMBSTONE_COLUMN: {"data_type": "bool", "hard_delete": True}}

# Each table the sessions resource writes carries its own complete hints, so no table inherits
# another's keys or marker column.
TABLE_HINTS: dict[str, Any] = {
    contract.PROJECTS_TABLE: dlt.mark.make_hints(
        table_name=contract.PROJECTS_TABLE,
        write_disposition=_MERGE,
        primary_key="id",
    ),
    contract.SESSIONS_TABLE: dlt.mark.make_hints(
        table_name=contract.SESSIONS_TABLE,
        write_disposition=_replace_listed_projects("id"),
        primary_key="id",
        columns=_TOMBSTONE,
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
    contract.SCENARIO_IDS_TABLE: dlt.mark.make_hints(
        table_name=contract.SCENARIO_IDS_TABLE,
        write_disposition=_replace_listed_projects("session_id"),
        primary_key=["session_id", "position"],
        columns=_TOMBSTONE,
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
    contract.PROJECT_LISTINGS_TABLE: dlt.mark.make_hints(
        table_name=contract.PROJECT_LISTINGS_TABLE,
        write_disposition=_MERGE,
        primary_key="project_id",
    ),
    contract.REJECTED_ROWS_TABLE: dlt.mark.make_hints(
        table_name=contract.REJECTED_ROWS_TABLE,
        write_disposition="append",
        columns={"project_id": {"data_type": "bigint"}, "rejected_at": {"data_type": "timestamp"}},
    ),
    # a detail read replaces the session's stored one; its messages are replaced whole (a
    # shorter conversation leaves no stale rows; an empty one stages a tombstone row)
    contract.DETAILS_TABLE: dlt.mark.make_hints(
        table_name=contract.DETAILS_TABLE,
        write_disposition=_MERGE,
        primary_key="session_id",
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
    contract.MESSAGES_TABLE: dlt.mark.make_hints(
        table_name=contract.MESSAGES_TABLE,
        write_disposition={**_MERGE, "destination_scope": "session_id IN (SELECT session_id FROM {staging_table})"},
        primary_key=["session_id", "position"],
        columns=_TOMBSTONE,
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
}

# the sessions resource's own default (each table it yields carries its own hints above)
SESSIONS_RESOURCE_DISPOSITION = _MERGE


def with_hints(table_name: str, item: Any) -> Any:
    """`item` marked for `table_name` with its hints."""
    return dlt.mark.with_hints(item, TABLE_HINTS[table_name], create_table_variant=True)
