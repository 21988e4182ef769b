"""The nightly run end to end: real fake-API server, real dlt pipeline, real DuckDB file."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pytest
from cekura_sessions.extract.contract import RAW_SCHEMA, SCENARIO_IDS_TABLE, SESSIONS_TABLE
from cekura_sessions.fake.data import DataSpec, FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, nights, warm
from support.ports import refused_port
from support.settings import API_KEY, DATASET_SPEC, TEST_RETRY

if TYPE_CHECKING:
    from cekura_sessions.fake.server import RequestRecord
    from cekura_sessions.run.night import RunOutcome

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


# --- nights that several tests share ------------------------------------------------------------
# A night costs about a second of CPU. Tests that only read what one night of the suite's data
# leaves, each about its own part of it (a project's fault, the tables' columns), share it: a
# module-scoped fixture runs it once, as conftest.py's `load` would (which, function-scoped, cannot).


@dataclass(frozen=True)
class SharedNight:
    """A night run once for several tests, and what they read of it."""

    dataset: FakeDataset
    outcome: RunOutcome
    db_path: Path
    log: list[RequestRecord]  # the server's requests, every answer of the night logged
    victims: dict[str, int] = field(default_factory=dict)  # a test case -> the project its fault is on
    scripts: dict[int, list[str]] = field(default_factory=dict)  # a project -> its scripted faults, in turn


def _shared_night(folder: Path, faults: Faults | None = None, victims: dict[str, int] | None = None) -> SharedNight:
    """A night of the suite's data with `faults`, in `folder`, as conftest.py's `load` runs one
    (support/nights.py's load)."""
    dataset = generate(DATASET_SPEC)
    faults = faults or Faults()
    scripts = {project: list(script) for (_, project), script in faults.script.items()}
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=faults) as api:
        outcome = nights.load(db=folder / "cekura.duckdb", base_url=api.url, pipelines_dir=str(folder / "pipelines"))
        # the server logs a slow answer only once it has slept, past the client's read timeout
        # and maybe past the night's end: wait until every scripted fault is in the log
        scripted = sum(len(script) for script in scripts.values())
        deadline = time.monotonic() + 120  # a hang guard: the slowest scripted fault sleeps 3 s
        while sum(1 for r in api.requests_log if r.fault) < scripted:
            assert time.monotonic() < deadline, f"the server logged fewer than the {scripted} scripted faults"
            time.sleep(0.05)
        log = list(api.requests_log)
    return SharedNight(dataset, outcome, folder / "cekura.duckdb", log, victims or {}, scripts)


def _served(night: SharedNight, project_id: int) -> list[str | None]:
    """The fault each sessions request of `project_id` was answered with (None: a normal answer)."""
    return [r.fault for r in night.log if r.endpoint == "sessions" and r.project_id == project_id]


@pytest.fixture(scope="module")
def plain_night(tmp_path_factory: pytest.TempPathFactory) -> SharedNight:
    """A plain first night of the suite's data, no faults: what it loads and what it keeps out."""
    return _shared_night(tmp_path_factory.mktemp("plain-night"))


def test_run_loads_every_listed_project_exactly(plain_night):
    outcome, dataset = plain_night.outcome, plain_night.dataset

    assert outcome.exit_code == 0, outcome.message
    _assert_raw_equals(plain_night.db_path, dataset)
    listed = expected.listed_project_ids(dataset)
    assert sorted(outcome.report.projects_ok) == sorted(listed)
    assert outcome.report.sessions_written == sum(len(dataset.sessions[p]) for p in listed)


def test_run_keeps_only_allowed_project_columns(plain_night):
    db_path = plain_night.db_path
    assert plain_night.outcome.exit_code == 0, plain_night.outcome.message

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


# a case's faults, served one per request to its project before a normal answer
TRANSIENT_FAULTS = {
    "5xx": ["500", "502", "503"],
    "408": ["408"],
    "429-retry-after-seconds-and-zero": ["429:0", "429:1"],
    "429-retry-after-http-date": ["429:http-date"],
    "dropped-connection": ["drop", "drop"],
    "slow-past-read-timeout": ["slow:3"],
    "truncated-json": ["truncated"],
    "html-with-200": ["html"],
    "object-instead-of-array": ["object"],
}
# The cases share two nights, each group of cases on a listed project of its own that has sessions
# (a fault taken for an empty listing would show), its cases' faults served in turn: at most three
# failed attempts a project (TEST_RETRY.max_attempts is 4), so every project loads. The 429s have a
# night of their own: a 429 after the answers of four requests or more teaches the client a throttle
# window (api/pacing.py), which paces the rest of the night; alone, each is a lone 429 early in the
# night, waited out as its Retry-After says, as when each case had its own night.
TRANSIENT_NIGHTS = {
    "failures": [["5xx"], ["dropped-connection", "slow-past-read-timeout"], ["truncated-json", "html-with-200"],
                 ["object-instead-of-array", "408"]],
    "throttled": [["429-retry-after-seconds-and-zero"], ["429-retry-after-http-date"]],
}


@pytest.fixture(scope="module")
def transient_nights(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SharedNight]:
    """`night_of(case)`: the night of TRANSIENT_NIGHTS that holds the TRANSIENT_FAULTS case, run on first use."""
    cases = [case for groups in TRANSIENT_NIGHTS.values() for group in groups for case in group]
    assert sorted(cases) == sorted(TRANSIENT_FAULTS), "every case in exactly one night"
    made: dict[str, SharedNight] = {}

    def night_of(case: str) -> SharedNight:
        name = next(name for name, groups in TRANSIENT_NIGHTS.items() if any(case in group for group in groups))
        if name not in made:
            dataset = generate(DATASET_SPEC)
            projects = [p for p in expected.listed_project_ids(dataset) if dataset.sessions[p]]
            groups = TRANSIENT_NIGHTS[name]
            assert len(projects) >= len(groups), "the suite's data has too few projects with sessions"
            victims, script = {}, {}
            for project, group in zip(projects, groups, strict=False):
                faults = [fault for case in group for fault in TRANSIENT_FAULTS[case]]
                assert sum(not f.startswith("429") for f in faults) < TEST_RETRY.max_attempts, group
                victims.update(dict.fromkeys(group, project))
                script[("sessions", project)] = faults
            made[name] = _shared_night(tmp_path_factory.mktemp(f"transient-{name}"), Faults(script=script), victims)
        return made[name]

    return night_of


@pytest.mark.parametrize("case", list(TRANSIENT_FAULTS))
def test_transient_faults_end_with_exact_data(transient_nights, case):
    night = transient_nights(case)
    victim = night.victims[case]
    outcome = night.outcome

    assert outcome.exit_code == 0, outcome.message
    with _read(night.db_path) as con:
        assert expected.loaded_sessions(con, f"project_id = {victim}") == expected.sessions(night.dataset, [victim])
        assert expected.loaded_scenario_ids(con, f"project_id = {victim}") == expected.scenario_ids(
            night.dataset, [victim])
    _assert_raw_equals(night.db_path, night.dataset)
    # one retry per fault of the night: every case's that shares it
    assert outcome.report.stats.retries == sum(len(TRANSIENT_FAULTS[c]) for c in night.victims)
    # the project's requests: its group's faults (its case's among them), each served once, then a normal answer
    served = _served(night, victim)
    script = night.scripts[victim]
    assert sorted(f for f in served if f) == sorted(script), f"{served} served for {script}"
    assert len(served) == len(script) + 1, f"{len(served)} attempts for {script}"


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


REFUSALS = ["403", "404"]


@pytest.fixture(scope="module")
def refusing_night(tmp_path_factory: pytest.TempPathFactory) -> SharedNight:
    """One night where each status of REFUSALS answers every request of a project of its own, the
    others loading."""
    listed = expected.listed_project_ids(generate(DATASET_SPEC))
    victims = dict(zip(REFUSALS, listed[1:], strict=False))
    faults = Faults(always={project: status for status, project in victims.items()})
    return _shared_night(tmp_path_factory.mktemp("refusing-night"), faults, victims)


@pytest.mark.parametrize("status", REFUSALS)
def test_forbidden_or_missing_project_fails_without_retrying(refusing_night, status):
    night = refusing_night
    victim = night.victims[status]
    outcome = night.outcome

    assert outcome.exit_code == 1
    assert sorted(outcome.report.projects_failed) == sorted(night.victims.values())
    assert len(_served(night, victim)) == 1
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
