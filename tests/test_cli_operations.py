"""The CLI as an operator meets it (issue 13, items 3 and 7): JSON lines that a machine can read,
status telling its states apart, the read-side commands and the demo waiting for a held file,
options that refuse nonsense, --version and help for people."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.cli import main as cli
from cekura_sessions.destination.lock import lock_path
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import Faults
from support import expected, warm
from support.processes import CLI, cli_env, database_held, release, run_cli

pytestmark = pytest.mark.e2e  # the CLI in subprocesses, the pipeline (dlt) in process

ROOT = Path(__file__).resolve().parents[1]


# --- item 3: every line a JSON object with time, level, message and run_id ------------------------


def _json_lines(text: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(record, dict), line
        assert {"time", "level", "message", "run_id"} <= record.keys(), line
        assert record["level"] in {"debug", "info", "warning", "error"}, line
        assert datetime.fromisoformat(record["time"]).tzinfo is not None, line
        records.append(record)
    return records


@pytest.mark.parametrize("case, code", [
    pytest.param("succeeded", 0, id="succeeded"),
    pytest.param("partial", 1, id="partial"),
    pytest.param("bad-key", 2, id="bad-key"),
    pytest.param("locked", 3, id="locked"),
])
def test_json_log_format_every_line_of_a_run_is_an_object_with_its_run_id(tmp_path, api, dataset, db_path, case, code):
    env = {}
    if case == "partial":
        api.faults = Faults(always={expected.listed_project_ids(dataset)[0]: "404"})
    if case == "bad-key":
        env["CEKURA_API_KEY"] = "not-the-key"
    args = ("--log-format", "json", "run", "--base-url", api.url, "--db", str(db_path), "--db-wait", "0")
    if case == "locked":
        with open(lock_path(db_path), "a+") as holder:
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            result = run_cli(tmp_path, *args, **env)
    else:
        result = run_cli(tmp_path, *args, **env)

    assert result.returncode == code, result.stderr
    out, err = _json_lines(result.stdout), _json_lines(result.stderr)
    run_ids = {record["run_id"] for record in out + err}
    assert len(run_ids) == 1 and None not in run_ids, f"one run, one id on every line: {run_ids}"
    if code:
        assert err[-1]["level"] == "error" and err[-1]["exit_code"] == code, err[-1]
    else:
        summary = next(record for record in out if "sessions_listed" in record)
        assert summary["exit_code"] == 0 and summary["sessions_listed"] == len(expected.sessions(dataset)), summary
    if case != "locked":  # a locked run touched nothing, so it has no ledger row
        with duckdb.connect(str(db_path), read_only=True) as con:
            ledger = con.execute("select run_id, exit_code from cekura_raw.pipeline_runs").fetchall()
        assert ledger == [(run_ids.pop(), code)]


def test_json_log_format_covers_a_usage_error(tmp_path):
    result = run_cli(tmp_path, "--log-format", "json", "run", "--concurrency", "0")
    assert result.returncode == 2 and result.stdout == ""
    [record] = _json_lines(result.stderr)
    assert record["level"] == "error" and "--concurrency" in record["message"], record
    assert record["run_id"] is None


# --- item 7: status, its states and its output ----------------------------------------------------


@pytest.mark.parametrize("state, code", [
    ("ok", 0), ("stale", 1), ("locked", 3), ("partial", 4), ("missing", 5), ("failed", 6),
])
def test_status_tells_each_state_apart_by_exit_code_and_one_line(tmp_path, run_night, first_night, api, dataset,
                                                                 db_path, state, code):
    if state != "missing":
        first_night()
    if state == "stale":
        with duckdb.connect(str(db_path)) as con:
            con.execute("update cekura_raw.pipeline_runs set finished_at = ?",
                        [datetime.now(timezone.utc) - timedelta(hours=30)])
    if state == "partial":
        api.faults = Faults(always={expected.listed_project_ids(dataset)[0]: "404"})
        # status reads the ledger and the raw tables (run/status.py), not the models: none built
        assert run_night(build_models=False).exit_code == 1
    if state == "failed":
        assert run_night(api_key="not-the-key").exit_code == 2
    args = ("status", "--db", str(db_path), "--db-wait", "0")
    if state == "locked":
        with database_held(db_path) as holder:
            result = run_cli(tmp_path, *args)
    else:
        result = run_cli(tmp_path, *args)

    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    if state == "ok":
        assert result.stderr == ""
        assert result.stdout.splitlines()[-1].startswith("ok: the newest run"), result.stdout
    else:
        [line] = result.stderr.splitlines()
        assert line.startswith(f"cekura-sessions: {state}: "), line
    if state == "locked":
        assert f"PID {holder.pid}" in result.stderr, result.stderr
    if state == "partial":
        assert "HTTP 404" in result.stderr, result.stderr
    if state == "failed":
        assert "(exit 2)" in result.stderr, result.stderr


def test_status_runs_0_lists_no_run_and_still_judges_freshness(tmp_path, first_night, db_path):
    first_night()
    result = run_cli(tmp_path, "status", "--db", str(db_path), "--runs", "0")
    assert result.returncode == 0, result.stderr
    assert "started (UTC)" not in result.stdout, result.stdout
    assert result.stdout.splitlines()[-1].startswith("ok: the newest run"), result.stdout


def test_status_shows_the_sessions_listed_on_a_night_that_changed_nothing(tmp_path, run_night, first_night, dataset,
                                                                        db_path):
    first_night()
    quiet = run_night()
    assert quiet.exit_code == 0, quiet.message
    result = run_cli(tmp_path, "status", "--db", str(db_path))
    header, newest = result.stdout.splitlines()[:2]
    cells = newest.split()
    row = dict(zip(header.replace("started (UTC)", "started").split(), [cells[0], " ".join(cells[1:3]), *cells[3:]]))
    assert row["run"] == quiet.report.run_id, result.stdout
    assert (row["listed"], row["written"]) == (str(len(expected.sessions(dataset))), "0"), result.stdout


def _freshness_lines(stdout: str) -> tuple[str, list[int], list[str]]:
    """`status`'s project part: its head line, the project ids listed, and the lines after them."""
    lines = stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if "project(s) loaded" in line)
    listed, rest = [], []
    for line in lines[start + 1:]:
        if line.startswith("rows: "):
            break
        if line.startswith("  project "):
            listed.append(int(line.split()[1]))
        else:
            rest.append(line)
    return lines[start], listed, rest


def test_status_counts_listed_projects_says_how_many_more_and_which_left(tmp_path, load, api, db_path):
    # `load`: nights without the models, since status's projects are the raw tables' (run/status.py)
    api.dataset = data = generate(DataSpec(projects=9, sessions_per_project=5, seed=11))
    assert load().exit_code == 0
    deleted = [p["id"] for p in data.projects if p.get("is_deleted")]
    listed = [p["id"] for p in data.projects if not p.get("is_deleted")]
    hidden = listed[-2:]  # 2 of 8: under the unlisting guard's half, so the night applies it
    api.faults = Faults(hidden_projects=tuple(hidden))
    assert load().exit_code == 0
    live = sorted(set(listed) - set(hidden))

    stalest = run_cli(tmp_path, "status", "--db", str(db_path), "--runs", "0")
    every = run_cli(tmp_path, "status", "--db", str(db_path), "--runs", "0", "--all")

    assert (stalest.returncode, every.returncode) == (0, 0), stalest.stderr + every.stderr
    gone = f"{len(deleted) + len(hidden)} project(s) deleted or no longer listed upstream " \
           f"(id {', '.join(map(str, sorted(deleted + hidden)))}): kept in cekura_raw, left out of analytics"
    head, shown, rest = _freshness_lines(stalest.stdout)
    assert head == f"{len(live)} listed project(s) loaded; stalest first:", stalest.stdout
    assert len(shown) == 5 and set(shown) <= set(live), stalest.stdout
    assert rest == [f"  ... and {len(live) - 5} more (`cekura-sessions status --all` lists every one)", gone], rest
    head, shown, rest = _freshness_lines(every.stdout)
    assert head == f"{len(live)} listed project(s) loaded; stalest first:", every.stdout
    assert sorted(shown) == live and rest == [gone], every.stdout


def test_status_into_a_closed_pipe_ends_quietly_with_its_verdict(tmp_path, first_night, db_path):
    first_night()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line, as `status | head -0` would be
    try:
        result = warm.run([*CLI, "status", "--db", str(db_path)], stdout=write_end, stderr=subprocess.PIPE,
                          env=cli_env(tmp_path), text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 0
    assert result.stderr == "", result.stderr


def test_demo_into_a_closed_pipe_ends_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `demo | head -0`
    try:
        result = warm.run([*CLI, "--log-level", "WARNING", "demo", "--db", str(tmp_path / "d.duckdb"),
                           "--projects", "2", "--sessions-per-project", "5"],
                          stdout=write_end, stderr=subprocess.PIPE, env=cli_env(tmp_path), text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


# --- item 7: models, check and demo wait for a held file, then say so in one line ------------------


@pytest.mark.parametrize("command", ["models", "check", "status"])
def test_read_side_command_waits_for_a_held_file_and_goes_on_when_it_is_free(tmp_path, first_night, db_path, command):
    first_night()
    with database_held(db_path) as holder:
        waiting = warm.Popen([*CLI, command, "--db", str(db_path), "--db-wait", "120"], env=cli_env(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = waiting.stderr.readline()  # the command says it waits before it waits
        release(holder)
        out, err = waiting.communicate(timeout=120)
    assert "held by" in said and f"PID {holder.pid}" in said and "--db-wait" in said, said
    assert waiting.returncode == 0, said + err


@pytest.mark.parametrize("command", ["models", "check"])
def test_read_side_command_on_a_file_held_too_long_exits_3_with_one_line(tmp_path, first_night, db_path, command):
    first_night()
    with database_held(db_path) as holder:
        result = run_cli(tmp_path, command, "--db", str(db_path), "--db-wait", "0")
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("cekura-sessions: ") and f"PID {holder.pid}" in line and "--db-wait" in line, line
    assert "IO Error" not in line and "cekura-sessions models" not in line, line


def test_check_without_models_says_to_build_them(tmp_path, first_night, db_path):
    first_night(build_models=False)
    result = run_cli(tmp_path, "check", "--db", str(db_path))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "no models yet" in line and f"cekura-sessions models --db {db_path}" in line, line


def test_check_show_prints_the_offending_rows(tmp_path, first_night, dataset, db_path):
    first_night()
    twice = min(session_id for session_id, *_ in expected.sessions(dataset))
    with duckdb.connect(str(db_path)) as con:
        con.execute("insert into analytics.sessions select * from analytics.sessions where session_id = ?", [twice])

    result = run_cli(tmp_path, "check", "--db", str(db_path), "--show", "5")

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("sessions_key_unique_not_null: 2 of 2 offending row(s)")
    header, *rows = lines[start + 1:start + 4]
    assert header.split()[:2] == ["session_id", "project_id"], header
    assert [row.split()[0] for row in rows] == [str(twice)] * 2, rows  # the two rows that share the key
    assert "rows_with_key" in header and [row.split()[-1] for row in rows] == ["2", "2"], rows


def test_demo_says_it_waits_for_a_held_file_and_names_the_option_it_has(tmp_path):
    db_path = tmp_path / "demo.duckdb"
    with database_held(db_path) as holder:
        result = run_cli(tmp_path, "demo", "--db", str(db_path), "--db-wait", "0.5", "--projects", "2")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "held by" in result.stderr and "waiting up to 0.5 s" in result.stderr, result.stderr
    assert f"PID {holder.pid}" in result.stdout and "raise --db-wait" in result.stdout, result.stdout
    assert "--db-wait" in run_cli(tmp_path, "demo", "--help").stdout


# --- item 7: options, --version, help --------------------------------------------------------------


@pytest.mark.parametrize("args, option", [
    (["run", "--db-wait", "-1"], "--db-wait"),
    (["models", "--db-wait", "-0.5"], "--db-wait"),
    (["check", "--db-wait", "-1"], "--db-wait"),
    (["status", "--db-wait", "-1"], "--db-wait"),
    (["demo", "--db-wait", "-1"], "--db-wait"),
    (["status", "--max-age-hours", "-1"], "--max-age-hours"),
    (["status", "--max-age-hours", "0"], "--max-age-hours"),
    (["status", "--max-age-hours", "nan"], "--max-age-hours"),
    (["status", "--runs", "-1"], "--runs"),
    (["run", "--concurrency", "0"], "--concurrency"),
    (["run", "--answer-deadline", "0"], "--answer-deadline"),
    (["check", "--show", "0"], "--show"),
    (["demo", "--projects", "0"], "--projects"),
])
def test_option_out_of_range_is_refused_in_one_line(capsys, args, option):
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"cekura-sessions: argument {option}: "), line
    assert captured.out == ""


def test_version_prints_the_packages_version(tmp_path):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run_cli(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, f"cekura-sessions {version}\n"), result.stderr


def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"cekura-sessions": parser, **{f"cekura-sessions {name}": sub for name, sub in commands.choices.items()}}


@pytest.mark.parametrize("name, parser", _all_parsers().items())
def test_every_option_has_help(name, parser):
    missing = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert missing == [], f"{name}: options without help: {missing}"


def test_top_level_help_is_written_for_people(tmp_path):
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("run", "demo", "models", "check", "status", "fake-api"):
        assert f"\n    {command} " in result.stdout, command
    for said in ("CEKURA_API_KEY", "CEKURA_DB", "exit codes of run", "--log-file", "--version"):
        assert said in result.stdout, said
    assert "argument parsing" not in result.stdout and "No pipeline logic" not in result.stdout
