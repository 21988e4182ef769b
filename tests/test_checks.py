"""The data checks in sql/checks/: each passes on clean data and catches its broken rule.

Expected offending-row counts come from the raw rows in raw_data.py by plain Python.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.models.runner import (
    CheckError,
    CheckResult,
    build_models,
    run_checks,
)
from cekura_sessions.settings import SQL_DIR
from support import raw_data
from support.model_expectations import CONTRACT_MARTS, ENUM
from support.raw_data import CLEAN, VARIED, RawData, parse_timestamp

CHECK_FILES = sorted((SQL_DIR / "checks").glob("*.sql"))


def built_db(path: Path, data: RawData) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    raw_data.create_raw_tables(con)
    raw_data.load(con, data)
    build_models(con)
    return con


def failing(results: list[CheckResult]) -> dict[str, int]:
    return {r.name: r.offending_rows for r in results if not r.passed}


# --- the files themselves ------------------------------------------------------------------


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CHECK_FILES])
def test_check_file_starts_with_severity_and_one_sentence(path):
    lines = path.read_text().splitlines()
    assert re.fullmatch(r"-- severity: (error|warning)", lines[0]), f"{path.name} line 1: {lines[0]!r}"
    assert re.fullmatch(r"-- [A-Z].*\.", lines[1]), f"{path.name} line 2: {lines[1]!r}"
    assert lines[1].count(". ") == 0, f"{path.name}: one sentence on line 2"


@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in CONTRACT_MARTS])
def test_every_contract_model_has_a_key_check(model):
    assert (SQL_DIR / "checks" / f"{model}_key_unique_not_null.sql").exists(), model
    assert (SQL_DIR / "marts" / f"{model}.sql").exists(), model


def test_check_result_passed_means_no_offending_rows():
    assert CheckResult("x", "error", "d", 0).passed
    assert not CheckResult("x", "warning", "d", 3).passed


def test_malformed_check_file_raises_naming_the_file(tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / "checks" / "broken_header.sql").write_text("select 1\n")
    con = duckdb.connect(str(tmp_path / "cekura.duckdb"))
    build_models(con, sql_dir)
    with pytest.raises(CheckError, match=r"checks/broken_header\.sql: line 1"):
        run_checks(con, sql_dir)


def test_check_whose_sql_fails_raises_a_duckdb_error_naming_the_file(tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / "checks" / "needs_a_table.sql").write_text(
        "-- severity: error\n-- Needs a table that is not there.\nselect * from analytics.nowhere\n"
    )
    con = duckdb.connect(str(tmp_path / "cekura.duckdb"))
    build_models(con, sql_dir)
    with pytest.raises(duckdb.Error, match=r"^checks/needs_a_table\.sql: Catalog Error"):
        run_checks(con, sql_dir)


# --- on whole datasets ---------------------------------------------------------------------


def test_checks_run_every_file_with_its_header(tmp_path):
    con = built_db(tmp_path / "cekura.duckdb", CLEAN)
    results = run_checks(con)
    assert [r.name for r in results] == [p.stem for p in CHECK_FILES]
    for result, path in zip(results, CHECK_FILES):
        lines = path.read_text().splitlines()
        assert result.severity == lines[0].split(": ")[1], path.name
        assert result.description == lines[1].removeprefix("-- "), path.name


def test_checks_all_pass_on_clean_data(tmp_path):
    con = built_db(tmp_path / "cekura.duckdb", CLEAN)
    assert failing(run_checks(con)) == {}


def test_checks_pass_on_an_empty_database(tmp_path):
    con = duckdb.connect(str(tmp_path / "cekura.duckdb"))
    build_models(con)
    assert failing(run_checks(con)) == {}


def test_checks_on_varied_data_raise_exactly_the_expected_warnings(tmp_path):
    con = built_db(tmp_path / "cekura.duckdb", VARIED)
    results = run_checks(con)
    created = {s["id"]: parse_timestamp(s["created_at"]) for s in VARIED.sessions}
    updated = {s["id"]: parse_timestamp(s["updated_at"]) for s in VARIED.sessions}
    want = {
        "sessions_status_in_enum": sum(1 for s in VARIED.sessions if s["status"] not in ENUM),
        "sessions_updated_at_not_before_created_at": sum(
            1 for i in created if created[i] and updated[i] and updated[i] < created[i]
        ),
        "sessions_created_at_not_null": sum(1 for c in created.values() if c is None),
        "session_scenarios_scenario_id_not_null": sum(
            1 for r in VARIED.scenario_ids if r["value"] is None
        ),
    }
    assert all(want.values()), f"the varied data should trip every warning: {want}"
    assert failing(results) == want
    severities = {r.name: r.severity for r in results}
    assert {name: severities[name] for name in want} == {name: "warning" for name in want}


# --- each rule, broken on purpose ----------------------------------------------------------


def _first_row(table: str) -> str:
    return f"rowid = (select min(rowid) from analytics.{table})"


def _duplicate(table: str) -> str:
    return f"insert into analytics.{table} select * from analytics.{table} where {_first_row(table)}"


BAD_SESSION = raw_data.session(2999, 201, "completed", "2024-05-04T10:00:00Z", "2024-05-04T10:01:00Z")

CASES = [
    # (setup: raw rows to load and rebuild, or SQL corrupting a built table), check, offending rows
    pytest.param(_duplicate("sessions"), "sessions_key_unique_not_null", 2, id="sessions-duplicate-key"),
    pytest.param(
        RawData(sessions=[CLEAN.sessions[-1]]),  # the same session loaded twice
        "sessions_key_unique_not_null", 2, id="sessions-duplicate-raw-row",
    ),
    pytest.param(
        "update analytics.sessions set session_id = null where session_id = 2003",  # no scenarios
        "sessions_key_unique_not_null", 1, id="sessions-null-key",
    ),
    pytest.param(
        _duplicate("session_scenarios"), "session_scenarios_key_unique_not_null", 2,
        id="session-scenarios-duplicate-key",
    ),
    pytest.param(
        f"update analytics.session_scenarios set position = null where {_first_row('session_scenarios')}",
        "session_scenarios_key_unique_not_null", 1, id="session-scenarios-null-key",
    ),
    pytest.param(
        _duplicate("project_completion_rates"), "project_completion_rates_key_unique_not_null", 2,
        id="project-completion-rates-duplicate-key",
    ),
    pytest.param(
        f"update analytics.daily_completion_rates set day = null where {_first_row('daily_completion_rates')}",
        "daily_completion_rates_key_unique_not_null", 1, id="daily-completion-rates-null-key",
    ),
    pytest.param(
        _duplicate("daily_completion_rates"), "daily_completion_rates_key_unique_not_null", 2,
        id="daily-completion-rates-duplicate-key",
    ),
    pytest.param(
        _duplicate("session_durations"), "session_durations_key_unique_not_null", 2,
        id="session-durations-duplicate-key",
    ),
    pytest.param(
        _duplicate("scenario_stats"), "scenario_stats_key_unique_not_null", 2,
        id="scenario-stats-duplicate-key",
    ),
    pytest.param(
        RawData(sessions=[raw_data.session(2999, 299, "completed", "2024-05-04T10:00:00Z", None)]),
        "sessions_project_exists", 1, id="session-of-unknown-project",
    ),
    pytest.param(
        RawData(scenario_ids=[{"session_id": 2999, "project_id": 201, "position": 0, "value": 5}]),
        "session_scenarios_session_exists", 1, id="scenario-row-of-unknown-session",
    ),
    pytest.param(
        RawData(scenario_ids=[{"session_id": 2003, "project_id": 202, "position": 0, "value": 5}]),
        "session_scenarios_project_matches_session", 1, id="scenario-row-in-another-project",
    ),
    pytest.param(
        RawData(sessions=[BAD_SESSION], scenario_ids=raw_data.explode([BAD_SESSION], {2999: [1, None]})),
        "session_scenarios_scenario_id_not_null", 1, id="null-list-element",
    ),
    pytest.param(
        RawData(sessions=[{**BAD_SESSION, "status": "archived"}]),
        "sessions_status_in_enum", 1, id="status-outside-enum",
    ),
    pytest.param(
        RawData(sessions=[{**BAD_SESSION, "status": None}]),
        "sessions_status_in_enum", 1, id="null-status",
    ),
    pytest.param(
        f"update analytics.project_completion_rates set sessions_pending = sessions_pending + 1 "
        f"where {_first_row('project_completion_rates')}",
        "project_completion_rates_counts_add_up", 1, id="counts-do-not-add-up",
    ),
    pytest.param(
        "update analytics.project_completion_rates set sessions_other = 1 where project_id = 201",
        "project_completion_rates_counts_add_up", 1, id="other-not-in-total",
    ),
    pytest.param(
        "update analytics.project_completion_rates set completion_rate = 1.5 where project_id = 201",
        "project_completion_rates_rates_within_0_and_1", 1, id="completion-rate-above-1",
    ),
    pytest.param(
        "update analytics.project_completion_rates set terminal_completion_rate = -0.25 "
        "where project_id = 202",
        "project_completion_rates_rates_within_0_and_1", 1, id="terminal-rate-below-0",
    ),
    pytest.param(
        "update analytics.project_completion_rates set completion_rate = null where project_id = 201",
        "project_completion_rates_rates_within_0_and_1", 1, id="completion-rate-null-with-sessions",
    ),
    pytest.param(
        "update analytics.project_completion_rates set terminal_completion_rate = 'inf'::double "
        "where project_id = 201",
        "project_completion_rates_rates_within_0_and_1", 1, id="terminal-rate-infinite",
    ),
    pytest.param(
        f"update analytics.daily_completion_rates set completion_rate = 2 "
        f"where {_first_row('daily_completion_rates')}",
        "daily_completion_rates_rate_within_0_and_1", 1, id="daily-rate-above-1",
    ),
    pytest.param(
        "update analytics.scenario_stats set completion_rate = 'nan'::double",
        "scenario_stats_rate_within_0_and_1",
        sum(1 for _ in {(r["project_id"], r["value"]) for r in CLEAN.scenario_ids}),
        id="scenario-rate-nan",
    ),
    pytest.param(
        RawData(sessions=[{**BAD_SESSION, "updated_at": "2024-05-04T09:59:59.999999Z"}]),
        "sessions_updated_at_not_before_created_at", 1, id="clock-skew",
    ),
    pytest.param(
        RawData(sessions=[{**BAD_SESSION, "created_at": "04/05/2024 10:00"}]),
        "sessions_created_at_not_null", 1, id="unparsable-created-at",
    ),
]


@pytest.mark.parametrize("breakage, check, offending", CASES)
def test_check_catches_its_broken_rule(tmp_path, breakage, check, offending):
    con = built_db(tmp_path / "cekura.duckdb", CLEAN)
    assert failing(run_checks(con)) == {}, "clean data must pass before breaking it"
    if isinstance(breakage, RawData):
        raw_data.load(con, breakage)
        build_models(con)
    else:
        con.execute(breakage)
    assert failing(run_checks(con)) == {check: offending}


def test_every_check_of_a_contract_model_has_a_breaking_case():
    covered = {case.values[1] for case in CASES}
    ours = {p.stem for p in CHECK_FILES if p.stem.startswith(tuple(f"{m}_" for m in CONTRACT_MARTS))}
    assert ours - covered == set(), "checks without a case in CASES"
