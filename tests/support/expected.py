"""What the raw tables must hold, computed in plain Python from the fake API's dataset."""

from __future__ import annotations

from typing import Any

import duckdb
from cekura_sessions.fake.data import FakeDataset

PROJECT_COLUMNS = ["id", "name", "organization_id", "organization_name", "timezone", "is_deleted", "created_at", "updated_at"]
# the allow-list as stored: plus our own `is_listed` (false once the projects list drops it)
STORED_PROJECT_COLUMNS = [*PROJECT_COLUMNS[:6], "is_listed", *PROJECT_COLUMNS[6:]]


def listed_project_ids(dataset: FakeDataset) -> list[int]:
    return [p["id"] for p in dataset.projects if not p.get("is_deleted")]


def projects(dataset: FakeDataset) -> set[tuple]:
    rows = set()
    for p in dataset.projects:
        org = p.get("organization") or {}
        rows.add((p["id"], p.get("name"), org.get("id"), org.get("name"), p.get("timezone"),
                  bool(p.get("is_deleted")), p.get("created_at"), p.get("updated_at")))
    return rows


def sessions(dataset: FakeDataset, project_ids: list[int] | None = None) -> set[tuple]:
    wanted = project_ids or listed_project_ids(dataset)
    rows = set()
    for pid in wanted:
        for s in dataset.sessions.get(pid, []):
            count = s.get("message_count")
            rows.add((s["id"], s.get("title"), s.get("project"), s.get("status"), s["created_at"],
                      s["updated_at"], None if count is None else str(count), pid))
    return rows


def scenario_ids(dataset: FakeDataset, project_ids: list[int] | None = None) -> list[tuple]:
    wanted = project_ids or listed_project_ids(dataset)
    rows = []
    for pid in wanted:
        for s in dataset.sessions.get(pid, []):
            for position, value in enumerate(s.get("scenario_ids") or []):
                rows.append((s["id"], pid, position, value))
    return sorted(rows)


def loaded_projects(con: duckdb.DuckDBPyConnection) -> set[tuple]:
    return set(con.execute(f"select {', '.join(PROJECT_COLUMNS)} from cekura_raw.projects").fetchall())


def loaded_sessions(con: duckdb.DuckDBPyConnection, where: str = "true") -> set[tuple]:
    return set(con.execute(
        "select id, title, project, status, created_at, updated_at, message_count, project_id "
        f"from cekura_raw.scenario_improvement_sessions where {where}"
    ).fetchall())


def loaded_scenario_ids(con: duckdb.DuckDBPyConnection, where: str = "true") -> list[tuple]:
    return con.execute(
        "select session_id, project_id, position, value "
        f"from cekura_raw.scenario_improvement_sessions__scenario_ids where {where} order by 1, 2, 3, 4"
    ).fetchall()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Every data table of the raw schema, sorted, for before/after comparisons."""
    tables = [t for (t,) in con.execute(
        "select table_name from information_schema.tables where table_schema = 'cekura_raw' "
        "and table_name not like '\\_dlt%' escape '\\' "
        "and table_name not in ('pipeline_runs', 'project_listings', 'session_status_history', "
        "'session_status_history_synced') order by 1"
    ).fetchall()]
    return {t: con.execute(f"select * from cekura_raw.{t} order by all").fetchall() for t in tables}
