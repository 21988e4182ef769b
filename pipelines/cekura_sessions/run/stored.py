"""What earlier nights stored, read from the database for the next extract (extract/state.py):
each listing's digest, each project's stored columns, the last good version of a session
whose new version is set aside, and the API's throttle as learned (run/throttle_memory.py). Read from the file itself, so a fresh or replaced database
always gets a full load."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from cekura_sessions.destination.database import Database
from cekura_sessions.destination.warehouse import Warehouse, WarehouseError, as_warehouse
from cekura_sessions.extract import contract
from cekura_sessions.extract.state import NightState
from cekura_sessions.run import throttle_memory

_RAW = contract.RAW_SCHEMA


def read_night_state(con: Any, database: Database) -> NightState:
    """What the night needs, read through `con`; the lookups the extract may still need open
    the database read-only for themselves, so the run holds no connection while it fetches."""
    warehouse = as_warehouse(con)
    return NightState(_listing_digests(warehouse), _stored_projects(warehouse), StoredSessions(database),
                      StoredIds(database), throttle_memory.remembered(warehouse), _stored_counts(warehouse),
                      database.dataset.raw)


def _stored_counts(con: Warehouse) -> dict[int, int]:
    if not con.has_table(_RAW, contract.SESSIONS_TABLE):
        return {}
    rows = con.execute(
        f"select project_id, count(*) from {_RAW}.{contract.SESSIONS_TABLE} group by project_id"
    ).fetchall()
    return {int(project_id): int(count) for project_id, count in rows}


def _listing_digests(con: Warehouse) -> dict[int, str]:
    if not con.has_table(_RAW, contract.PROJECT_LISTINGS_TABLE):
        return {}
    rows = con.execute(
        f"select project_id, listing_digest from {_RAW}.{contract.PROJECT_LISTINGS_TABLE} "
        "where listing_digest is not null"
    ).fetchall()
    return dict(rows)


def _stored_projects(con: Warehouse) -> dict[int, tuple[Any, ...]]:
    """Each stored project's allow-listed columns, in contract.PROJECTS's order; a column the
    table lacks (dlt never saw a value, or a database older than the column) reads NULL."""
    present = set(con.columns(_RAW, contract.PROJECTS_TABLE))
    if "id" not in present:
        return {}
    columns = ", ".join(name if name in present else f"null as {name}" for name in contract.PROJECTS.names)
    rows = con.execute(f"select {columns} from {_RAW}.{contract.PROJECTS_TABLE}").fetchall()
    return {row[0]: row for row in rows}


class StoredSessions:
    """`(project id, session ids) -> sessions in the API's shape`, as last loaded. Asked only for
    sessions whose new version was set aside, after the last listing: each call opens the file
    read-only for the lookup (tens of milliseconds), so the file is free during the fetch."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def __call__(self, project_id: int, session_ids: list[int]) -> list[dict[str, Any]]:
        if not session_ids:
            return []
        with self._database.connect(read_only=True) as con:
            return _stored_sessions(con, project_id, session_ids)


class StoredIds:
    """`project id -> its stored session ids` (int64, sorted). Asked from fetch threads only for
    a changed listing of several pages: the first call reads every stored (project, id) pair
    in one query (200,000 sessions: 1.6 MB of ids), later calls look them up."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._by_project: dict[int, np.ndarray] | None = None

    def __call__(self, project_id: int) -> np.ndarray:
        with self._lock:
            if self._by_project is None:
                with self._database.connect(read_only=True) as con:
                    self._by_project = _stored_ids(con)
        return self._by_project.get(project_id, np.empty(0, dtype=np.int64))


def _stored_ids(con: Warehouse) -> dict[int, np.ndarray]:
    if not con.has_table(_RAW, contract.SESSIONS_TABLE):
        return {}
    pairs = np.array(con.execute(
        f"select project_id, id from {_RAW}.{contract.SESSIONS_TABLE} order by project_id, id"
    ).fetchall(), dtype=np.int64).reshape(-1, 2)
    projects, ids = pairs[:, 0].copy(), pairs[:, 1].copy()
    starts = np.flatnonzero(np.r_[True, projects[1:] != projects[:-1]]) if len(projects) else np.empty(0, dtype=int)
    return {int(projects[s]): ids[s:e] for s, e in zip(starts, [*starts[1:], len(ids)])}


def _stored_sessions(con: Warehouse, project_id: int, session_ids: list[int]) -> list[dict[str, Any]]:
    try:
        result = con.execute(
            f"""
            select
                s.id, s.title, s.project, s.status, s.created_at, s.updated_at, s.message_count,
                (
                    select array_agg(c.value order by c.position)
                    from {_RAW}.{contract.SCENARIO_IDS_TABLE} as c
                    where c.session_id = s.id and c.project_id = s.project_id
                ) as scenario_ids
            from {_RAW}.{contract.SESSIONS_TABLE} as s
            where s.project_id = ? and s.id in (select unnest(cast(? as bigint[])))
            """,
            [project_id, session_ids],
        )
    except WarehouseError:  # no table yet: dlt creates the nested table on its first non-empty list
        return []
    names = [column[0] for column in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]
