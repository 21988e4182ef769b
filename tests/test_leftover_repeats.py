"""A completed leftover package may have copied a table twice (its copy job killed after
DuckDB committed it); the repeated rows are dropped before anything else is loaded."""

from __future__ import annotations

import duckdb
import pytest
from cekura_sessions.run.dlt_pipeline import drop_repeated_rows
from support import expected

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API


def test_rows_loaded_twice_are_dropped_and_the_rest_is_exact(first_night, dataset, db_path):
    first_night(build_models=False)
    listed = expected.listed_project_ids(dataset)
    with duckdb.connect(str(db_path)) as con:
        con.execute("insert into cekura_raw.scenario_improvement_sessions "
                    "select * from cekura_raw.scenario_improvement_sessions where project_id = ?", [listed[0]])
        con.execute("insert into cekura_raw.scenario_improvement_sessions__scenario_ids "
                    "select * from cekura_raw.scenario_improvement_sessions__scenario_ids where project_id = ?", [listed[0]])
        twice = len(dataset.sessions[listed[0]]) + len(expected.scenario_ids(dataset, [listed[0]]))

        assert drop_repeated_rows(con) == twice
        assert drop_repeated_rows(con) == 0

        assert con.execute("select count(*) - count(distinct id) from cekura_raw.scenario_improvement_sessions").fetchone() == (0,)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(dataset, listed)
        assert expected.loaded_sessions(con) == expected.sessions(dataset, listed)


def test_a_fresh_database_has_nothing_to_drop(tmp_path):
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as con:
        assert drop_repeated_rows(con) == 0
