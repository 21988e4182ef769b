"""Never silently wrong (issue 19): an API that drifts (ids as text, a raw byte, a bare NaN in a
new field, a list that ignores `project_id`) and sudden removals (an empty listing, a project
falling from 30 sessions to 10, a projects list that lost most of its projects).

Each case runs the real pipeline against the fake API on loopback (its drift switches in
fake/faults.py) into a real DuckDB file; what must be stored is computed in plain Python from
the dataset the fake served.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.fake.data import FakeDataset
from cekura_sessions.fake.faults import NAN_FIELD
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected

pytestmark = pytest.mark.e2e


@pytest.fixture
def load(load, monkeypatch):
    """conftest.py's load, with the removal guard on (conftest.py turns it off)."""
    monkeypatch.setenv("SOURCES__CEKURA__ACCEPT_REMOVALS", "false")
    return load


def _read(db_path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db_path), read_only=True)


def _live(dataset: FakeDataset) -> list[int]:
    """Listed projects with sessions, in listing order."""
    return [pid for pid in expected.listed_project_ids(dataset) if dataset.sessions.get(pid)]


def _assert_holds(db_path: Path, dataset: FakeDataset) -> None:
    """The sessions and scenario ids stored are exactly the dataset's listed projects'."""
    with _read(db_path) as con:
        got, got_ids = expected.loaded_sessions(con), expected.loaded_scenario_ids(con)
    want = expected.sessions(dataset)
    assert got == want, f"missing {sorted(want - got)[:2]}, extra {sorted(got - want)[:2]}"
    assert got_ids == expected.scenario_ids(dataset)


def _switch(api: FakeCekuraApi, **drift: object) -> None:
    api.faults = Faults(**drift)


def test_ids_sent_as_text_load_as_integers_and_no_project_is_unlisted(load, first_night, api, dataset, db_path,
                                                                      caplog):
    first_night(build_models=False)
    _switch(api, string_ids=True)
    caplog.set_level(logging.WARNING)

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    assert (outcome.report.rows_rejected, outcome.report.projects_failed) == (0, {})
    _assert_holds(db_path, dataset)
    with _read(db_path) as con:
        assert set(con.execute("select id from cekura_raw.projects where not is_listed").fetchall()) == set()
        assert expected.loaded_projects(con) == expected.projects(dataset)
    lines = [r.getMessage() for r in caplog.records if "came as text holding integers" in r.getMessage()]
    assert len(lines) == 1, lines


def test_a_raw_byte_in_one_title_costs_that_character_only(load, api, dataset, db_path):
    victim = _live(dataset)[0]
    _switch(api, raw_byte_projects=(victim,))

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    want = copy.deepcopy(dataset)
    first = want.sessions[victim][0]
    first["title"] = f"Caf\ufffd {first['title']}"  # the byte 0xE9 alone became U+FFFD
    _assert_holds(db_path, want)


def test_a_bare_nan_in_a_new_field_loads_every_row(load, api, dataset, db_path):
    _switch(api, nan_field=True)

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.projects_failed == {}
    _assert_holds(db_path, dataset)
    with _read(db_path) as con:
        values = con.execute(f"select distinct {NAN_FIELD} from cekura_raw.scenario_improvement_sessions").fetchall()
    assert values == [("NaN",)]


def test_a_list_that_ignores_project_id_counts_each_row_under_its_own_project(load, api, dataset, db_path):
    _switch(api, ignore_project_filter=True)

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert "the API ignored project_id" in outcome.message, outcome.message
    # each session under the project whose own listing it is; a `project: null` row of another
    # project is counted under the first listing that delivered it (the rest are its repeats)
    listed = expected.listed_project_ids(dataset)
    own = {s["id"]: pid for pid in listed for s in dataset.sessions.get(pid, [])}
    with _read(db_path) as con:
        got = dict(con.execute("select id, project_id from cekura_raw.scenario_improvement_sessions "
                               "where project is not null").fetchall())
    want = {sid: pid for pid in listed for s in dataset.sessions.get(pid, []) if s.get("project") is not None
            for sid in [s["id"]]}
    assert got == want
    assert set(got) <= set(own)


def test_a_list_that_ignores_project_id_sets_aside_rows_of_projects_not_loaded(load, api, dataset, db_path):
    asked = _live(dataset)[0]
    _switch(api, ignore_project_filter=True)

    outcome = load(project_ids=[asked])

    assert outcome.exit_code == 1, outcome.message
    others = {s["id"] for pid, rows in dataset.sessions.items() if pid != asked for s in rows
              if s.get("project") is not None}
    with _read(db_path) as con:
        stored = {r[0] for r in con.execute("select id from cekura_raw.scenario_improvement_sessions").fetchall()}
        reasons = con.execute("select raw_json, reason from cekura_raw.rejected_rows").fetchall()
    assert stored & others == set(), "another project's row was counted under the project asked for"
    strays = {json.loads(raw)["id"] for raw, reason in reasons if "the API ignored project_id" in reason}
    assert strays == others


@pytest.mark.parametrize("kept", [0, 10], ids=["listing-empty", "30-to-10"])
def test_a_sudden_removal_is_held_until_accepted(load, first_night, api, dataset, db_path, kept):
    first_night(build_models=False)
    victim = _live(dataset)[1]
    stored = len(dataset.sessions[victim])
    assert stored == 30
    tomorrow = copy.deepcopy(dataset)
    tomorrow.sessions[victim] = tomorrow.sessions[victim][:kept]
    api.dataset = tomorrow

    held = load()

    assert held.exit_code == 1, held.message
    assert f"project {victim}: {stored - kept} of {stored}" in held.message, held.message
    assert "--accept-removals" in held.message
    _assert_holds(db_path, dataset)  # nothing removed

    again = load()  # read again, and held again, every night until accepted
    assert again.exit_code == 1 and victim in again.report.removals_held

    accepted = load(accept_removals=True)

    assert accepted.exit_code == 0, accepted.message
    _assert_holds(db_path, tomorrow)


def test_the_guard_thresholds_come_from_config(load, first_night, api, dataset, db_path, monkeypatch):
    first_night(build_models=False)
    victim = _live(dataset)[1]
    tomorrow = copy.deepcopy(dataset)
    tomorrow.sessions[victim] = tomorrow.sessions[victim][:10]
    api.dataset = tomorrow
    monkeypatch.setenv("SOURCES__CEKURA__REMOVAL_MIN_SESSIONS", "25")  # 20 removals: below it

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    _assert_holds(db_path, tomorrow)


def test_a_projects_list_with_a_third_of_its_projects_unlists_none_until_accepted(load, first_night, api, dataset,
                                                                                  db_path):
    first_night(build_models=False)
    listed = expected.listed_project_ids(dataset)
    hidden = tuple(listed[len(listed) // 3:])
    _switch(api, hidden_projects=hidden)

    held = load()

    assert held.exit_code == 1, held.message
    assert f"lost {len(hidden)} of {len(dataset.projects)} listed projects" in held.message, held.message
    with _read(db_path) as con:
        unlisted = con.execute("select id from cekura_raw.projects where not is_listed").fetchall()
    assert unlisted == []
    _assert_holds(db_path, dataset)

    accepted = load(accept_removals=True)

    assert accepted.exit_code == 0, accepted.message
    with _read(db_path) as con:
        unlisted = {r[0] for r in con.execute("select id from cekura_raw.projects where not is_listed").fetchall()}
    assert unlisted == set(hidden)
