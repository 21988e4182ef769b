"""A night where nothing changed upstream loads nothing through dlt, yet every listing is
marked listed; the one thing that changed, whatever it is, is loaded."""

from __future__ import annotations

import copy
from pathlib import Path

import duckdb

import expected


def _read(db_path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db_path), read_only=True)


def _dlt_loads(db_path: Path) -> int:
    with _read(db_path) as con:
        return con.execute("select count(*) from cekura_raw._dlt_loads").fetchone()[0]


def test_a_quiet_night_loads_nothing_and_marks_every_listing_listed(run_night, dataset, db_path):
    first = run_night()
    assert first.exit_code == 0, first.message
    loads = _dlt_loads(db_path)
    with _read(db_path) as con:
        before = expected.snapshot(con)
        history_rows = con.execute("select count(*) from cekura_raw.session_status_history").fetchone()[0]

    second = run_night()

    assert second.exit_code == 0, second.message
    assert _dlt_loads(db_path) == loads, "a night with nothing new still loaded a package"
    listed = expected.listed_project_ids(dataset)
    assert sorted(second.report.projects_unchanged) == sorted(listed)
    with _read(db_path) as con:
        assert expected.snapshot(con) == before
        assert con.execute("select count(*) from cekura_raw.session_status_history").fetchone()[0] == history_rows
        marks = con.execute("select project_id, listed_at, run_id from cekura_raw.project_listings").fetchall()
    assert sorted(p for p, _, _ in marks) == sorted(listed)
    assert {(at, run) for _, at, run in marks} == {(second.report.started_at, second.report.run_id)}


def test_a_renamed_project_is_loaded_on_an_otherwise_quiet_night(run_night, api, dataset, db_path):
    assert run_night().exit_code == 0
    renamed = copy.deepcopy(dataset)
    renamed.projects[0]["name"] = "Renamed Agent"
    api.dataset = renamed

    outcome = run_night()

    assert outcome.exit_code == 0, outcome.message
    with _read(db_path) as con:
        assert expected.loaded_projects(con) == expected.projects(renamed)
        assert expected.loaded_sessions(con) == expected.sessions(renamed, expected.listed_project_ids(renamed))
