"""The nightly run end to end: real fake-API server, real dlt pipeline, real DuckDB file."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.extract.contract import RAW_SCHEMA, SCENARIO_IDS_TABLE, SESSIONS_TABLE
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, warm
from support.ports import refused_port
from support.settings import API_KEY, TEST_RETRY

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API


def _read(db_path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db_path), read_only=True)


def _assert_raw_equals(db_path: Path, dataset, project_ids=None) -> None:
    with _read(db_path) as con:
        got_sessions = expected.loaded_sessions(con)
        want_sessions = expected.sessions(dataset, project_ids)
        assert got_sessions == want_sessions, (
            f"missing {sorted(want_sessions - got_sessions)[:3]}, extra {sorted(got_sessions - want_sessions)[:3]}"
        )
        got_ids = expected.loaded_scenario_ids(con)
        want_ids = expected.scenario_ids(dataset, project_ids)
        assert got_ids == want_ids, f"{len(got_ids)} scenario-id rows, want {len(want_ids)}"
        assert expected.loaded_projects(con) == expected.projects(dataset)


def test_run_loads_every_listed_project_exactly(load, dataset, db_path):
    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(db_path, dataset)
    listed = expected.listed_project_ids(dataset)
    assert sorted(outcome.report.projects_ok) == sorted(listed)
    assert outcome.report.sessions_written == sum(len(dataset.sessions[p]) for p in listed)


def test_run_keeps_only_allowed_project_columns(load, db_path):
    load()

    with _read(db_path) as con:
        columns = [c for (c,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'cekura_raw' and table_name = 'projects' order by ordinal_position"
        ).fetchall()]
    assert columns == expected.STORED_PROJECT_COLUMNS
    raw_bytes = db_path.read_bytes()
    assert b"@example.com" not in raw_bytes, "a member email reached the database file"
    assert b"webhook" not in raw_bytes.lower()


def test_rerun_on_unchanged_data_changes_nothing(load, first_night, db_path):
    first_night()
    with _read(db_path) as con:
        before = expected.snapshot(con)

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.sessions_written == 0
    assert len(outcome.report.projects_unchanged) == len(outcome.report.projects_ok)
    with _read(db_path) as con:
        assert expected.snapshot(con) == before


def test_next_night_leaves_exactly_the_new_state(load, first_night, api, dataset, db_path):
    first_night()
    tomorrow = dataset.next_night(seed=2)
    api.dataset = tomorrow

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(db_path, tomorrow)


def test_project_dropping_to_zero_sessions_loses_its_rows(load, first_night, api, dataset, db_path):
    first_night()
    emptied = next(p for p in expected.listed_project_ids(dataset) if dataset.sessions[p])
    dataset.sessions[emptied] = []
    api.dataset = dataset

    assert load().exit_code == 0
    with _read(db_path) as con:
        assert expected.loaded_sessions(con, f"project_id = {emptied}") == set()
        assert expected.loaded_scenario_ids(con, f"project_id = {emptied}") == []
    _assert_raw_equals(db_path, dataset)


def test_paginated_listing_loads_the_same_rows(dataset, db_path, tmp_path, load):
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=7) as paged:
        outcome = load(base_url=paged.url)
        pages = paged.request_count(endpoint="sessions")

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(db_path, dataset)
    assert pages > len(expected.listed_project_ids(dataset)), "the listing was not actually paginated"


def test_configured_project_ids_load_only_those(load, dataset, db_path):
    chosen = expected.listed_project_ids(dataset)[:2]

    outcome = load(project_ids=chosen)

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(db_path, dataset, chosen)


TRANSIENT_FAULTS = [
    pytest.param(["500", "502", "503"], id="5xx"),
    pytest.param(["408"], id="408"),
    pytest.param(["429:0", "429:1"], id="429-retry-after-seconds-and-zero"),
    pytest.param(["429:http-date"], id="429-retry-after-http-date"),
    pytest.param(["drop", "drop"], id="dropped-connection"),
    pytest.param(["slow:3"], id="slow-past-read-timeout"),
    pytest.param(["truncated"], id="truncated-json"),
    pytest.param(["html"], id="html-with-200"),
    pytest.param(["object"], id="object-instead-of-array"),
]


@pytest.mark.parametrize("faults", TRANSIENT_FAULTS)
def test_transient_faults_end_with_exact_data(load, api, dataset, db_path, faults):
    victim = expected.listed_project_ids(dataset)[0]
    api.faults = Faults(script={("sessions", victim): list(faults)})

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(db_path, dataset)
    assert outcome.report.stats.retries == len(faults)
    if not faults[0].startswith("slow"):  # the server logs a slow answer only once it has slept
        attempts = api.request_count(endpoint="sessions", project_id=victim)
        assert attempts == len(faults) + 1, f"{attempts} attempts for {faults}"


def test_transient_fault_on_projects_list_is_retried(load, api, dataset, db_path):
    api.faults = Faults(script={("projects", None): ["503", "drop"]})

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(db_path, dataset)


def test_project_that_keeps_failing_keeps_its_rows_and_others_move_on(load, first_night, api, dataset, db_path):
    first_night()
    victim, *others = expected.listed_project_ids(dataset)
    with _read(db_path) as con:
        victim_rows = expected.loaded_sessions(con, f"project_id = {victim}")
        victim_ids = expected.loaded_scenario_ids(con, f"project_id = {victim}")
    tomorrow = dataset.next_night(seed=3)
    api.dataset = tomorrow
    api.faults = Faults(always={victim: "500"})
    api.reset_log()

    outcome = load()

    assert outcome.exit_code == 1
    assert f"project {victim}" in outcome.message
    assert api.request_count(endpoint="sessions", project_id=victim) == TEST_RETRY.max_attempts
    with _read(db_path) as con:
        assert expected.loaded_sessions(con, f"project_id = {victim}") == victim_rows
        assert expected.loaded_scenario_ids(con, f"project_id = {victim}") == victim_ids
        assert expected.loaded_sessions(con, f"project_id <> {victim}") == expected.sessions(tomorrow, others)


@pytest.mark.parametrize("status", ["403", "404"])
def test_forbidden_or_missing_project_fails_without_retrying(load, api, dataset, status):
    victim = expected.listed_project_ids(dataset)[1]
    api.faults = Faults(always={victim: status})

    outcome = load()

    assert outcome.exit_code == 1
    assert api.request_count(endpoint="sessions", project_id=victim) == 1
    assert f"HTTP {status}" in outcome.report.projects_failed[victim]


def test_bad_key_is_fatal_and_loads_nothing(load, db_path):
    outcome = load(api_key="wrong-key")

    assert outcome.exit_code == 2
    assert "401" in outcome.message and "CEKURA_API_KEY" in outcome.message
    with _read(db_path) as con:
        tables = con.execute(
            "select count(*) from information_schema.tables where table_name = 'scenario_improvement_sessions'"
        ).fetchone()[0]
    assert tables == 0


def test_unreachable_api_is_fatal(load):
    with refused_port() as port:
        outcome = load(base_url=f"http://127.0.0.1:{port}")

    assert outcome.exit_code == 2
    assert "nothing loaded" in outcome.message


def test_every_project_failing_is_fatal(load, api, dataset):
    api.faults = Faults(always={pid: "404" for pid in expected.listed_project_ids(dataset)})

    outcome = load()

    assert outcome.exit_code == 2
    assert "no project could be loaded" in outcome.message


def test_total_attempts_stay_within_the_cap_under_random_faults(load, api, dataset, db_path):
    api.faults = Faults(random_rate=0.3, random_seed=5)

    outcome = load()

    requests_made = api.request_count()
    listed = len(expected.listed_project_ids(dataset))
    assert requests_made <= (listed + 1) * TEST_RETRY.max_attempts
    assert outcome.report.stats.requests == requests_made
    if outcome.exit_code == 0:
        _assert_raw_equals(db_path, dataset)
    else:
        assert outcome.exit_code == 1, outcome.message


def test_large_generated_dataset_with_clean_data_loads(db_path, tmp_path, run_night):
    big = generate(DataSpec(projects=40, sessions_per_project=120, seed=3, oddities=False))
    with FakeCekuraApi(big, api_key=API_KEY) as server:
        outcome = run_night(base_url=server.url)
    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(db_path, big)


def test_fresh_database_with_only_empty_lists_gets_typed_tables(dataset, db_path, run_night):
    for sessions in dataset.sessions.values():
        for session in sessions:
            session["scenario_ids"] = []
            session["message_count"] = None
    with FakeCekuraApi(dataset, api_key=API_KEY) as server:
        outcome = run_night(base_url=server.url)

    assert outcome.exit_code == 0, outcome.message
    with _read(db_path) as con:
        columns = dict(con.execute(
            "select table_name || '.' || column_name, data_type from information_schema.columns "
            "where table_schema = 'cekura_raw' and table_name like 'scenario_improvement_sessions%'"
        ).fetchall())
        assert con.execute("select count(*) from analytics.session_scenarios").fetchone()[0] == 0
    assert columns["scenario_improvement_sessions__scenario_ids.value"] == "BIGINT"
    assert columns["scenario_improvement_sessions__scenario_ids.session_id"] == "BIGINT"
    assert columns["scenario_improvement_sessions.message_count"] == "VARCHAR"


def test_leftover_packages_of_another_database_are_not_loaded_here(tmp_path, api, dataset, load, caplog):
    import os
    import signal
    import subprocess
    import sys
    import time

    other_db = tmp_path / "other.duckdb"
    marker = other_db.with_name("other.duckdb.paused-load")
    env = {**os.environ, "CEKURA_API_KEY": API_KEY, "CEKURA_TEST_HOOK": f"load:{marker}"}
    process = warm.Popen(
        [sys.executable, "-m", "cekura_sessions.cli", "run", "--base-url", api.url, "--db", str(other_db)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    tomorrow = dataset.next_night(seed=12)
    api.dataset = tomorrow

    pipelines_dir = tmp_path / "other.duckdb.dlt"  # the killed run's own folder, named explicitly below
    assert list((pipelines_dir / "cekura_sessions" / "load" / "normalized").iterdir()), "no leftover package to test with"

    mine = tmp_path / "mine.duckdb"
    outcome = load(db=mine, pipelines_dir=str(pipelines_dir))

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(mine, tomorrow)
    assert f"discarding load packages left for {other_db}" in caplog.text


def test_a_lone_429_makes_the_told_request_wait_its_retry_after(db_path, load):
    """A 429 that no throttle window explains (a proxy's, too few answers before it to learn a
    limit from): the request told waits as long as Retry-After says; the night loads exactly.
    A 429 that a window explains paces every worker to it (tests/test_drf_throttle.py)."""
    many = generate(DataSpec(projects=60, sessions_per_project=5, seed=4, oddities=False))
    first = expected.listed_project_ids(many)[0]
    faults = Faults(script={("sessions", first): ["429:1"]}, latency_ms=40)
    with FakeCekuraApi(many, api_key=API_KEY, faults=faults) as server:
        outcome = load(base_url=server.url, concurrency=4)
        log = list(server.requests_log)

    assert outcome.exit_code == 0, outcome.message
    told = next(r.at for r in log if r.status == 429)
    retried = [r.at for r in log if r.project_id == first and r.status == 200]
    assert retried and retried[0] >= told + 1.0, "the told request did not wait as long as Retry-After asked"
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(many)


LOOP_JOINS = {"NESTED_LOOP_JOIN", "BLOCKWISE_NL_JOIN", "PIECEWISE_MERGE_JOIN", "CROSS_PRODUCT"}


@pytest.fixture
def raw_delete_plans(monkeypatch):
    """The operators DuckDB plans for every DELETE that dlt runs on the raw tables, by statement:
    a spy around dlt's DuckDB SQL client runs EXPLAIN on dlt's own connection just before the
    statement, then runs the statement unchanged."""
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

    plans: dict[str, set[str]] = {}
    real = DuckDbSqlClient.execute_query

    def operators(node: dict) -> set[str]:
        return {node.get("name", "")}.union(*(operators(child) for child in node.get("children", [])))

    def spy(self, query, *args, **kwargs):
        for statement in str(query).split(";"):
            statement = statement.strip()
            if statement.startswith(f'DELETE FROM "{RAW_SCHEMA}".'):
                (_, plan), = self.native_connection.execute("EXPLAIN (FORMAT json) " + statement).fetchall()
                plans[statement] = set().union(*(operators(root) for root in json.loads(plan)))
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(DuckDbSqlClient, "execute_query", spy)
    return plans


def test_a_night_where_every_project_changed_is_not_quadratic(db_path, load, raw_delete_plans):
    # regression: dlt's default delete for primary_key + merge_key is one EXISTS with an OR,
    # which DuckDB ran as a nested loop: 20,000 changed sessions took 16 s and 4.5 GB. The deletes
    # must be planned as hash joins, whatever the machine's speed.
    night1 = generate(DataSpec(projects=50, sessions_per_project=400, seed=21, oddities=False))
    night2 = night1.next_night(seed=22)
    with FakeCekuraApi(night1, api_key=API_KEY) as server:
        assert load(base_url=server.url).exit_code == 0
        server.dataset = night2
        raw_delete_plans.clear()
        outcome = load(base_url=server.url)

    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.sessions_written > 15_000
    _assert_raw_equals(db_path, night2)
    deleted = {table for table in (SESSIONS_TABLE, SCENARIO_IDS_TABLE)
               for statement in raw_delete_plans if statement.startswith(f'DELETE FROM "{RAW_SCHEMA}"."{table}"')}
    assert deleted == {SESSIONS_TABLE, SCENARIO_IDS_TABLE}, f"deletes seen: {list(raw_delete_plans)}"
    for statement, operators in raw_delete_plans.items():
        assert "HASH_JOIN" in operators and not operators & LOOP_JOINS, f"{statement}\nplanned as {sorted(operators)}"


def test_dlt_config_supplies_key_and_project_ids_when_no_alias_is_set(load, dataset, db_path, monkeypatch):
    chosen = expected.listed_project_ids(dataset)[1:3]
    monkeypatch.setenv("SOURCES__CEKURA__API_KEY", API_KEY)
    monkeypatch.setenv("SOURCES__CEKURA__PROJECT_IDS", str(chosen))

    outcome = load(api_key=None)

    assert outcome.exit_code == 0, outcome.message
    assert sorted(outcome.report.projects_ok) == sorted(chosen)
    _assert_raw_equals(db_path, dataset, chosen)
