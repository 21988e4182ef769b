"""Nightly operation: lock, held database, crash recovery, history, ledger, status."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.cli import main as cli
from cekura_sessions.destination.lock import lock_path
from cekura_sessions.fake.server import Faults
from support import expected, warm
from support.night_processes import AS_THE_CLI_RUNS, night_as_the_cli_runs_it
from support.processes import CLI
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) in process and the CLI in subprocesses



def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA_")}
    env.update(CEKURA_API_KEY=API_KEY, RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(tmp_path / "dlt-data"))
    env.update(extra)
    return env


def _run_cli(tmp_path: Path, api, db_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return warm.run(
        [*CLI, "run", "--base-url", api.url, "--db", str(db_path), "--db-wait", "1", *args],
        env=_cli_env(tmp_path, **env), capture_output=True, text=True, timeout=120,
    )


def test_second_run_exits_3_while_the_lock_is_held(run_night, first_night, db_path):
    first_night()
    before = db_path.read_bytes()
    with open(lock_path(db_path), "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        outcome = run_night()
    assert outcome.exit_code == 3
    assert "another run holds" in outcome.message and "nothing was touched" in outcome.message
    assert db_path.read_bytes() == before


def test_database_held_by_another_process_gives_one_clear_line(tmp_path, api, db_path):
    # it holds the file until the test kills it (it reads its standard input, which stays open)
    hold = f"import duckdb, sys; c = duckdb.connect({str(db_path)!r}); print('ok', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        result = _run_cli(tmp_path, api, db_path)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("cekura-sessions:")]
    assert len(lines) == 1 and "is held by" in lines[0] and f"PID {holder.pid}" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stage", ["extract", "normalize", "load", "models"])
def test_killed_run_is_recovered_by_the_next_night(tmp_path, api, dataset, db_path, run_night, stage):
    victim = expected.listed_project_ids(dataset)[-1]
    marker = db_path.with_name(f"{db_path.name}.paused-{stage}")
    env = {} if stage == "extract" else {"CEKURA_TEST_HOOK": f"{stage}:{marker}"}
    if stage == "extract":
        api.faults = Faults(script={("sessions", victim): ["slow:60"]})
    process = warm.Popen(
        [*CLI, "run", "--base-url", api.url, "--db", str(db_path)],
        env=_cli_env(tmp_path, **env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: marker.exists() if stage != "extract" else api.request_count(endpoint="sessions") >= 3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    tomorrow = dataset.next_night(seed=4)
    api.dataset = tomorrow
    api.faults = Faults()
    result = night_as_the_cli_runs_it(run_night)  # the recovery itself is no process's

    assert result.exit_code == 0, result.message
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(tomorrow)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(tomorrow)
        runs = con.execute("select status, finished_at is null from cekura_raw.pipeline_runs order by started_at").fetchall()
        model_sessions = con.execute("select count(*) from analytics.sessions").fetchone()[0]
    assert runs == [("running", True), ("succeeded", False)]
    assert model_sessions == len(expected.sessions(tomorrow))


def test_the_database_file_is_free_while_the_night_waits_on_the_network(tmp_path, api, dataset, db_path, first_night):
    """A notebook or the DuckDB shell can open the file, read-only, while a run fetches."""
    first_night(**AS_THE_CLI_RUNS)
    listed = expected.listed_project_ids(dataset)
    api.reset_log()
    api.faults = Faults(script={("sessions", listed[-1]): ["slow:60"]})
    process = warm.Popen(
        [*CLI, "run", "--base-url", api.url, "--db", str(db_path)],
        env=_cli_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # every other listing answered: the slow one is the run's only wait (it is logged once answered)
        _wait_for(lambda: api.request_count(endpoint="sessions") >= len(listed) - 1)
        assert process.poll() is None, "the run should still be waiting on the slow project"
        with duckdb.connect(str(db_path), read_only=True) as con:  # raises while another process holds it
            loaded = expected.loaded_sessions(con)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert loaded == expected.sessions(dataset), "the first night's rows, read while the second fetched"


def _wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the run never reached the point to kill it"
        time.sleep(0.1)


def test_two_nights_record_status_history(run_night, first_night, api, dataset, db_path):
    first_night()  # the first night is the history's start, not the subject: a copy (it exited 0)
    with duckdb.connect(str(db_path), read_only=True) as con:
        # when the copied night started, as its ledger row keeps it (written from its report)
        ((first_started_at,),) = con.execute("select started_at from cekura_raw.pipeline_runs").fetchall()
    tomorrow = dataset.next_night(seed=6)
    api.dataset = tomorrow
    second = run_night()
    assert second.exit_code == 0, second.message

    want = _expected_periods(dataset, tomorrow, first_started_at, second.report.started_at)
    with duckdb.connect(str(db_path), read_only=True) as con:
        got = set(con.execute(
            "select session_id, project_id, status, observed_from, observed_to from analytics.session_status_changes"
        ).fetchall())
    assert got == want, f"missing {sorted(want - got)[:3]}, extra {sorted(got - want)[:3]}"


def _expected_periods(night1, night2, t1: datetime, t2: datetime) -> set[tuple]:
    """Status periods after two nights, from the two datasets in plain Python."""
    def states(dataset):
        return {s["id"]: (pid, s.get("status"))
                for pid in expected.listed_project_ids(dataset) for s in dataset.sessions.get(pid, [])}
    before, after = states(night1), states(night2)
    periods = set()
    for sid, (pid, status) in before.items():
        if sid not in after:
            periods.add((sid, pid, status, t1, t2))  # vanished on night 2
        elif after[sid] != (pid, status):
            periods.add((sid, pid, status, t1, t2))
            periods.add((sid, *after[sid], t2, None))
        else:
            periods.add((sid, pid, status, t1, None))
    for sid, (pid, status) in after.items():
        if sid not in before:
            periods.add((sid, pid, status, t2, None))
    return periods


def test_ledger_records_each_run(run_night, first_night, api, dataset, db_path):
    first_night()
    victim = expected.listed_project_ids(dataset)[0]
    api.faults = Faults(always={victim: "404"})
    api.dataset = dataset.next_night(seed=8)
    partial = run_night()

    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute(
            "select run_id, status, exit_code, projects_ok, projects_failed::varchar, sessions_loaded, http_requests, error "
            "from cekura_raw.pipeline_runs order by started_at"
        ).fetchall()
    assert [r[1:3] for r in rows] == [("succeeded", 0), ("partial", 1)]
    run_id, _, _, ok, failed, loaded, requests_made, error = rows[1]
    assert run_id == partial.report.run_id
    assert ok == len(expected.listed_project_ids(dataset)) - 1
    assert str(victim) in failed and "404" in failed
    assert loaded == partial.report.sessions_written
    assert requests_made == partial.report.stats.requests
    assert f"project {victim}" in error


def test_status_exit_code_flips_when_data_is_older_than_the_limit(first_night, db_path, capsys):
    first_night()
    assert cli.main(["status", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "succeeded" in out

    with duckdb.connect(str(db_path)) as con:
        con.execute("update cekura_raw.pipeline_runs set finished_at = ?", [datetime.now(timezone.utc) - timedelta(hours=30)])
    assert cli.main(["status", "--db", str(db_path)]) == 1
    assert "stale: the newest run that loaded data finished 30.0 h ago" in capsys.readouterr().err
    assert cli.main(["status", "--db", str(db_path), "--max-age-hours", "48"]) == 0


def test_status_prints_utc_times_whatever_the_machines_time_zone(first_night, db_path):
    first_night()
    with duckdb.connect(str(db_path)) as con:
        when = datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc)  # 05:00 the next day in Kolkata
        con.execute("update cekura_raw.project_listings set listed_at = ?", [when])
        con.execute("update cekura_raw.pipeline_runs set started_at = ?, finished_at = ?", [when, when])
    env = {**os.environ, "TZ": "Asia/Kolkata", "RUNTIME__DLTHUB_TELEMETRY": "false"}

    result = warm.run([*CLI, "status", "--db", str(db_path), "--max-age-hours", "100000"],
                      capture_output=True, text=True, env=env, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "last loaded 2026-11-29 23:30 UTC" in result.stdout, result.stdout
    assert "2026-11-29 23:30:00" in result.stdout, result.stdout  # the run's start
    assert "2026-11-30 05:00" not in result.stdout, result.stdout


def test_status_without_any_successful_run_fails(run_night, db_path, capsys):
    run_night(api_key="wrong-key")
    assert cli.main(["status", "--db", str(db_path)]) == 1
    assert "no run has succeeded" in capsys.readouterr().err


def test_check_command_exits_non_zero_when_an_error_check_fails(first_night, db_path, capsys):
    first_night()
    assert cli.main(["check", "--db", str(db_path)]) == 0
    with duckdb.connect(str(db_path)) as con:
        # a duplicated session breaks the model's key
        con.execute("insert into analytics.sessions select * from analytics.sessions limit 1")
    capsys.readouterr()

    assert cli.main(["check", "--db", str(db_path)]) == 1
    captured = capsys.readouterr()
    assert "sessions_key_unique_not_null" in captured.err
    row = next(line for line in captured.out.splitlines() if line.startswith("sessions_key_unique_not_null"))
    assert row.split()[-2:] == ["2", "FAIL"], row  # both rows that share the key are offending


def test_models_command_rebuilds_from_raw(first_night, db_path, capsys):
    first_night(build_models=False)
    with duckdb.connect(str(db_path), read_only=True) as con:
        raw_sessions = con.execute("select count(*) from cekura_raw.scenario_improvement_sessions").fetchone()[0]

    assert cli.main(["models", "--db", str(db_path)]) == 0

    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(*) from analytics.sessions").fetchone()[0] == raw_sessions
    assert f"sessions {raw_sessions:>30} rows".split() == next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("sessions ")
    ).split()


@pytest.mark.parametrize("command, code", [("models", 2), ("check", 2), ("status", 5)])  # status: "missing"
def test_read_side_commands_on_a_missing_database_say_so(tmp_path, capsys, command, code):
    assert cli.main([command, "--db", str(tmp_path / "none.duckdb")]) == code
    assert "does not exist" in capsys.readouterr().err


def test_models_are_rebuilt_only_when_their_inputs_changed(run_night, api, dataset, db_path):
    first = run_night()
    assert first.model_rows["sessions"] == len(expected.sessions(dataset))

    quiet = run_night()
    assert quiet.exit_code == 0 and quiet.model_rows == {}, "a night with no change rebuilt the models"
    assert [c.name for c in quiet.checks], "the checks must still run"

    with duckdb.connect(str(db_path)) as con:
        con.execute("drop table analytics.scenario_stats")
    assert run_night().model_rows, "a missing model was not rebuilt"

    tomorrow = dataset.next_night(seed=13)
    api.dataset = tomorrow
    changed = run_night()
    assert changed.model_rows["sessions"] == len(expected.sessions(tomorrow))
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(*) from analytics.sessions").fetchone()[0] == len(expected.sessions(tomorrow))


def test_run_killed_inside_the_model_build_leaves_the_previous_models_whole(tmp_path, run_night, first_night, api,
                                                                            dataset, db_path):
    first_night()
    with duckdb.connect(str(db_path), read_only=True) as con:
        before = {m: con.execute(f"select count(*) from analytics.{m}").fetchone()[0]
                  for m in ("sessions", "session_scenarios", "project_completion_rates", "scenario_stats")}
    tomorrow = dataset.next_night(seed=14)
    assert len(expected.sessions(tomorrow)) != before["sessions"], "the nights must differ for this test to mean anything"
    api.dataset = tomorrow
    marker = db_path.with_name(f"{db_path.name}.paused-model-sessions")
    process = warm.Popen(
        [*CLI, "run", "--base-url", api.url, "--db", str(db_path)],
        env=_cli_env(tmp_path, DLT_DATA_DIR=str(tmp_path / "pipelines"), CEKURA_TEST_HOOK=f"model-sessions:{marker}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_for(marker.exists)
    os.kill(process.pid, signal.SIGKILL)  # analytics.sessions is rebuilt, the other models not yet
    process.wait()

    with duckdb.connect(str(db_path), read_only=True) as con:
        after_kill = {m: con.execute(f"select count(*) from analytics.{m}").fetchone()[0] for m in before}
        raw_sessions = expected.loaded_sessions(con)
    assert after_kill == before, "a killed build left some models rebuilt and others not"
    assert raw_sessions == expected.sessions(tomorrow), "the load before the build should have committed"

    result = night_as_the_cli_runs_it(run_night)
    assert result.exit_code == 0, result.message
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(*) from analytics.sessions").fetchone()[0] == len(expected.sessions(tomorrow))
