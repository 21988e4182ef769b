"""Ctrl-C and SIGTERM (issue 13, item 2): a real run in a real subprocess gets a real signal at a
chosen point; it exits 130 or 143 with one line, the ledger says `interrupted`, the lock is free,
and the next night loads exactly what the API then serves."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import duckdb
import pytest
from cekura_sessions.fake.server import Faults
from support import expected, warm
from support.night_processes import (
    AS_THE_CLI_RUNS,
    lock_is_free,
    night_as_the_cli_runs_it,
    pause_marker,
    start_cli,
    wait_for,
)

pytestmark = pytest.mark.e2e  # the CLI in subprocesses, dlt loading real files


def _line(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"cekura-sessions: interrupted by {name}; the next run finishes or discards what this one left"


@pytest.mark.parametrize(
    ("signum", "stage"),
    [
        # waiting on a slow answer: the fetch thread cannot be stopped, so the run records and exits
        # where it stands once the grace period is over
        pytest.param(signal.SIGINT, "extract", id="sigint-extract"),
        pytest.param(signal.SIGTERM, "extract", id="sigterm-extract"),
        # inside dlt's load loop, one job loaded and others not: dlt's own handlers would hold
        # the signal until the load drained, then drop it
        pytest.param(signal.SIGINT, "load-job", id="sigint-load"),
        pytest.param(signal.SIGTERM, "load-job", id="sigterm-load"),
        # inside the models' transaction
        pytest.param(signal.SIGTERM, "model-sessions", id="sigterm-models"),
    ],
)
def test_signal_stops_the_run_and_the_next_night_is_exact(tmp_path, api, dataset, db_path, run_night, first_night,
                                                          signum, stage):
    first_night(**AS_THE_CLI_RUNS)  # a first night, so the second has history
    tonight = dataset.next_night(seed=21)
    api.dataset = tonight
    listed = expected.listed_project_ids(tonight)
    marker = pause_marker(db_path, stage)
    if stage == "extract":
        api.reset_log()
        api.faults = Faults(script={("sessions", listed[-1]): ["slow:60"]})
        process = start_cli(tmp_path, api.url, db_path)
        # every other listing answered (the log records a request once answered): the run waits on the slow one
        wait_for(lambda: api.request_count(endpoint="sessions") >= len(listed) - 1, "the other listings answered")
    else:
        process = start_cli(tmp_path, api.url, db_path, CEKURA_TEST_HOOK=f"{stage}:{marker}")
        wait_for(marker.exists, f"the run paused at {stage}")

    try:
        os.kill(process.pid, signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # the signal was not honoured: do not leave the run paused
            process.kill()
            process.wait()

    assert process.returncode == 128 + signum, stderr
    assert [line for line in stderr.splitlines() if line.startswith("cekura-sessions:")] == [_line(signum)], stderr
    for noise in ("Traceback", "KeyboardInterrupt", "SignalReceived", "failed"):
        assert noise not in stderr, f"{noise!r} on stderr:\n{stderr}"
    assert lock_is_free(db_path), "the interrupted run still holds the lock"
    with duckdb.connect(str(db_path), read_only=True) as con:
        runs = con.execute(
            "select status, exit_code, error, finished_at is not null from cekura_raw.pipeline_runs order by started_at"
        ).fetchall()
    assert runs == [("succeeded", 0, None, True), ("interrupted", 128 + signum, _line(signum)[17:], True)]

    tomorrow = tonight.next_night(seed=22)
    api.dataset, api.faults = tomorrow, Faults()
    marker.unlink(missing_ok=True)
    after = night_as_the_cli_runs_it(run_night)

    assert after.exit_code == 0, after.message
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(tomorrow)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(tomorrow)
        assert expected.loaded_projects(con) == expected.projects(tomorrow)
        model_sessions = con.execute("select count(*) from analytics.sessions").fetchone()[0]
        statuses = [s for (s,) in con.execute("select status from cekura_raw.pipeline_runs order by started_at").fetchall()]
    assert model_sessions == len(expected.sessions(tomorrow))
    assert statuses == ["succeeded", "interrupted", "succeeded"]


@pytest.mark.parametrize("stage", [
    pytest.param("model-sessions", id="unwinds-in-order"),
    # waiting on a slow answer the run cannot unwind: the watchdog records it and exits where it stands
    pytest.param("extract", id="ended-by-the-watchdog"),
])
def test_an_interrupted_run_under_a_log_file_mails_one_line_and_logs_json(tmp_path, api, dataset, db_path, stage):
    """Under cron (--log-file, JSON lines) a SIGTERM still says one line on stdout, which cron
    mails, and the log file stays one JSON object a line."""
    import json
    import subprocess

    from support.night_processes import CLI, cli_env

    log_file = tmp_path / "run.log"
    marker = pause_marker(db_path, stage)
    env = cli_env(tmp_path, CEKURA_TEST_HOOK=f"{stage}:{marker}")
    listed = expected.listed_project_ids(dataset)
    if stage == "extract":
        api.faults = Faults(script={("sessions", listed[-1]): ["slow:60"]})
    process = warm.Popen(
        [*CLI, "--log-format", "json", "--log-file", str(log_file), "run", "--base-url", api.url, "--db", str(db_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        if stage == "extract":
            wait_for(lambda: api.request_count(endpoint="sessions") >= len(listed) - 1, "the other listings answered")
        else:
            wait_for(marker.exists, "the run paused in its models")
        os.kill(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    assert stdout.count("\n") == 1 and "exited 143" in stdout and "interrupted by SIGTERM" in stdout, stdout
    records = [json.loads(line) for line in log_file.read_text().splitlines()]  # raises on a plain line
    assert any("interrupted by SIGTERM" in r["message"] and r["level"] == "error" for r in records), records
    assert all(r.get("run_id") for r in records if r["logger"] == "cekura_sessions.cli"), records


class _Stop(Exception):
    pass


def _waiting_for_futures(thread: threading.Thread) -> bool:
    """Whether `thread` is inside concurrent.futures.wait."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith(os.path.join("futures", "_base.py")):
            return True
        frame = frame.f_back
    return False


def test_a_signal_a_fetch_thread_receives_stops_the_wait_for_answers_still_in_flight():
    """Python runs a signal's handler in the main thread only; a signal the kernel hands to a
    fetch thread interrupts no wait of the main thread. The loop the night waits for its answers
    in (extract/bounded.py) looks up while both answers are still pending."""
    from concurrent.futures import ThreadPoolExecutor

    from cekura_sessions.extract.bounded import completed

    answers = threading.Event()  # given only once the test has seen the signal's exception
    ended: list[str] = []

    def fetch(item: str) -> str:
        if item == "signalled":
            while not _waiting_for_futures(threading.main_thread()):
                time.sleep(0.01)
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # this thread takes it
        answers.wait(120)
        ended.append(item)
        return item

    def handler(signum, frame):
        raise _Stop

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with ThreadPoolExecutor(2) as pool:
            try:
                with pytest.raises(_Stop):
                    for _ in completed(pool, fetch, ["slow", "signalled"], in_flight=2):
                        pass
                assert ended == [], "the signal took effect only once an answer came"
            finally:
                answers.set()
    finally:
        signal.signal(signal.SIGUSR1, previous)
