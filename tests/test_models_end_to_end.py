"""The analytics models after a real run against the fake API, against plain-Python
expectations computed from the generated data (never from the SQL under test)."""

from __future__ import annotations

import copy

import duckdb
import pytest
from cekura_sessions.fake.data import generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, nights
from support.model_expectations import EXPECTED, expected_project_completion_rates, expected_sessions
from support.raw_data import RawData
from support.rows import assert_same_rows, keyed_rows
from support.settings import API_KEY, DATASET_SPEC

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API, then the models


def raw_from_dataset(dataset) -> RawData:
    """The raw rows the loader should produce for this dataset, derived in plain Python."""
    projects = [
        {"id": p["id"], "name": p.get("name"), "timezone": p.get("timezone"), "is_deleted": bool(p.get("is_deleted"))}
        for p in dataset.projects
    ]
    sessions = [
        {"id": s[0], "title": s[1], "status": s[3], "created_at": s[4], "updated_at": s[5],
         "message_count": s[6], "project_id": s[7]}
        for s in expected.sessions(dataset)
    ]
    scenario_ids = [
        {"session_id": sid, "project_id": pid, "position": pos, "value": value}
        for sid, pid, pos, value in expected.scenario_ids(dataset)
    ]
    return RawData(projects=projects, sessions=sessions, scenario_ids=scenario_ids)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """One real night into a DuckDB file, shared by the module's tests that only read it: (the
    open file, the raw rows expected from the data, the night's outcome). It is the night
    `run_night()` runs (the same settings), so a test of that night's outcome reads it here."""
    dataset = generate(DATASET_SPEC)
    folder = tmp_path_factory.mktemp("night")
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=Faults()) as api:
        outcome = nights.run(db=folder / "cekura.duckdb", base_url=api.url, pipelines_dir=str(folder / "pipelines"))
    assert outcome.exit_code == 0, outcome.message
    con = duckdb.connect(str(folder / "cekura.duckdb"), read_only=True)
    yield con, raw_from_dataset(dataset), outcome
    con.close()


@pytest.mark.parametrize("model", list(EXPECTED))
def test_model_matches_generated_data(loaded, model):
    con, raw, _ = loaded
    assert_same_rows(keyed_rows(con, model), EXPECTED[model](raw), model)


def test_every_error_check_passes_on_generated_data(loaded):
    _, _, outcome = loaded  # a plain first night's checks: the shared night's, which no test changes
    failed = [c.name for c in outcome.checks if not c.passed and c.severity == "error"]
    assert outcome.exit_code == 0 and failed == [], failed
    warned = {c.name for c in outcome.checks if not c.passed}
    # the generated data holds unknown statuses and one clock-skewed session on purpose
    assert {"sessions_status_in_enum", "sessions_updated_at_not_before_created_at"} <= warned


def test_models_follow_the_second_night(run_night, first_night, api, dataset, db_path):
    first_night()
    tomorrow = dataset.next_night(seed=9)
    api.dataset = tomorrow
    assert run_night().exit_code == 0
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert_same_rows(keyed_rows(con, "sessions"), expected_sessions(raw_from_dataset(tomorrow)), "sessions")
        assert_same_rows(keyed_rows(con, "project_completion_rates"),
                         expected_project_completion_rates(raw_from_dataset(tomorrow)), "project_completion_rates")


def test_deleted_unlisted_and_moved_leave_the_models_but_raw_keeps_its_rows(run_night, first_night, api, dataset,
                                                                           db_path):
    first_night()
    tomorrow = copy.deepcopy(dataset)
    live = [p["id"] for p in tomorrow.projects if not p.get("is_deleted") and tomorrow.sessions.get(p["id"])]
    deleted, unlisted, moved_from, moved_to = live[:4]
    tomorrow.project(deleted)["is_deleted"] = True
    tomorrow.projects = [p for p in tomorrow.projects if p["id"] != unlisted]
    moved = tomorrow.sessions[moved_from].pop(0)
    moved.update(project=moved_to, scenario_ids=[424242], updated_at="2026-12-01T00:00:00Z")
    tomorrow.sessions[moved_to].append(moved)
    api.dataset = tomorrow

    assert run_night().exit_code == 0

    with duckdb.connect(str(db_path), read_only=True) as con:
        # the models: only the listed, undeleted projects of tomorrow, computed from its data alone
        want = raw_from_dataset(tomorrow)
        for model, compute in EXPECTED.items():
            assert_same_rows(keyed_rows(con, model), compute(want), model)
        (changes,) = con.execute("select count(*) from analytics.session_status_changes "
                                 "where project_id in (?, ?)", [deleted, unlisted]).fetchone()
        assert changes == 0, "status periods of gone projects left"
        assert con.execute("select project_id, scenario_id from analytics.session_scenarios where session_id = ?",
                           [moved["id"]]).fetchall() == [(moved_to, 424242)]
        # raw keeps the gone projects' sessions as history, and marks the unlisted one
        for project_id in (deleted, unlisted):
            assert expected.loaded_sessions(con, f"project_id = {project_id}") == expected.sessions(
                dataset, [project_id]), f"project {project_id}'s raw rows"
        listed = dict(con.execute("select id, is_listed from cekura_raw.projects").fetchall())
        assert listed == {p["id"]: p["id"] != unlisted for p in dataset.projects}

    relisted = copy.deepcopy(tomorrow)
    relisted.projects.append(dataset.project(unlisted))  # listed again: it counts again
    api.dataset = relisted
    assert run_night().exit_code == 0
    with duckdb.connect(str(db_path), read_only=True) as con:
        (count,) = con.execute("select sessions_total from analytics.project_completion_rates where project_id = ?",
                               [unlisted]).fetchone()
        assert count == len(dataset.sessions[unlisted])


def test_a_database_from_before_is_listed_marks_unlisted_projects_on_its_first_night(run_night, first_night, api,
                                                                                    dataset, db_path):
    first_night()
    with duckdb.connect(str(db_path)) as con:  # as an older version left it: no is_listed column
        con.execute("alter table cekura_raw.projects drop column is_listed")
        assert runner_builds(con), "models on the old layout"
    gone = next(p["id"] for p in dataset.projects if not p.get("is_deleted") and dataset.sessions.get(p["id"]))
    tomorrow = copy.deepcopy(dataset)
    tomorrow.projects = [p for p in tomorrow.projects if p["id"] != gone]
    api.dataset = tomorrow

    assert run_night().exit_code == 0

    with duckdb.connect(str(db_path), read_only=True) as con:
        (left,) = con.execute("select count(*) from analytics.sessions where project_id = ?", [gone]).fetchone()
        listed = con.execute("select is_listed from cekura_raw.projects where id = ?", [gone]).fetchall()
    assert (left, listed) == (0, [(False,)])


def runner_builds(con: duckdb.DuckDBPyConnection) -> bool:
    from cekura_sessions.models.runner import build_models

    return build_models(con)["sessions"] > 0
