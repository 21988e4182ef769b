"""A night where nothing changed upstream loads nothing through dlt, yet every listing is
marked listed; the one thing that changed, whatever it is, is loaded."""

from __future__ import annotations

import copy
from pathlib import Path

import duckdb
import pytest
from support import expected

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API


def _read(db_path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db_path), read_only=True)


def _dlt_loads(db_path: Path) -> int:
    with _read(db_path) as con:
        return con.execute("select count(*) from cekura_raw._dlt_loads").fetchone()[0]


def test_a_quiet_night_loads_nothing_and_marks_every_listing_listed(run_night, first_night, dataset, db_path):
    first_night()  # the night before the quiet one, as a plain first night left it (it exited 0)
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


def test_a_renamed_project_is_loaded_on_an_otherwise_quiet_night(run_night, first_night, api, dataset, db_path):
    first_night()
    renamed = copy.deepcopy(dataset)
    renamed.projects[0]["name"] = "Renamed Agent"
    api.dataset = renamed

    outcome = run_night()

    assert outcome.exit_code == 0, outcome.message
    with _read(db_path) as con:
        assert expected.loaded_projects(con) == expected.projects(renamed)
        assert expected.loaded_sessions(con) == expected.sessions(renamed, expected.listed_project_ids(renamed))


def test_history_compares_again_after_any_load_it_has_not_seen(first_night, db_path):
    """The history skips its comparison when no dlt load happened since the last one; a load
    it missed (a run killed between load and history) is compared by the next run."""
    from cekura_sessions.extract.report import RunReport
    from cekura_sessions.run import bookkeeping

    first_night()  # a loaded database to compare in: the subject is record_changes, not the night
    with duckdb.connect(str(db_path)) as con:
        session_id, status = con.execute(
            "select id, status from cekura_raw.scenario_improvement_sessions order by id limit 1").fetchone()
        con.execute("update cekura_raw.scenario_improvement_sessions set status = 'cancelled' where id = ?", [session_id])
        report = RunReport()
        con.execute("update cekura_raw.project_listings set run_id = ?", [report.run_id])

        assert bookkeeping.record_changes(con, report) == 0, "compared although no load happened"

        con.execute("insert into cekura_raw._dlt_loads (load_id, schema_name, status, inserted_at) "
                    "values ('9999999999.0', 'cekura', 0, now())")
        assert bookkeeping.record_changes(con, report) == (0 if status == "cancelled" else 1)
        assert bookkeeping.record_changes(con, report) == 0


def test_a_quiet_night_gives_the_checks_answer_on_the_same_models_failures_included(run_night, first_night, db_path):
    first_night()
    with duckdb.connect(str(db_path)) as con:  # a repeated session: the key check must fail
        con.execute("insert into cekura_raw.scenario_improvement_sessions "
                    "select * from cekura_raw.scenario_improvement_sessions order by id limit 1")

    rebuilt = run_night()
    quiet = run_night()

    assert rebuilt.model_rows and not quiet.model_rows  # the quiet night built nothing
    for outcome in (rebuilt, quiet):
        assert outcome.exit_code == 1, outcome.message
        assert "sessions_key_unique_not_null" in outcome.message
    assert quiet.checks == rebuilt.checks
