"""A team's readers beside the nightly run: a dashboard or a notebook that opens the DuckDB file
read-only every 0.2 s while runs write. Every open of the run, its own and dlt's, waits for them
(within --db-wait); none fails the night. Real reader processes, a real file."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import duckdb
import pytest
from cekura_sessions.destination.database import connect as connect_waiting
from support import expected
from support.night_processes import pause_marker, start_cli, wait_for
from support.processes import database_held, release

pytestmark = pytest.mark.e2e

READER = """
import sys, time, duckdb
path, stop = sys.argv[1], sys.argv[2]
import os
opened, refused = [], 0  # when it opened the file (time.time()), how often it was refused
while not os.path.exists(stop):
    try:
        con = duckdb.connect(path, read_only=True)
        opened.append(time.time())
        con.execute("select count(*) from information_schema.tables").fetchall()
        time.sleep(0.05)  # a dashboard's query holds the file a moment
        con.close()
    except duckdb.IOException:
        refused += 1  # a run is writing: the reader waits its turn, as the run waits for it
    time.sleep(0.2)
print(refused, *opened, flush=True)
"""


def _retitled(dataset, night: int):
    """The data with every session's title changed for this night: every listing changes, so
    every night loads (removals would meet the removal guard, which is not this test's)."""
    changed = copy.deepcopy(dataset)
    for rows in changed.sessions.values():
        for row in rows:
            row["title"] = f"night {night}: {row.get('title')}"
    return changed


def test_a_reader_polling_the_file_never_fails_a_night(tmp_path, api, dataset, db_path, run_night, first_night):
    """The nights run in this process (the reader is the other process the file's lock is
    about); each waits for the reader within --db-wait's 60 s."""
    listed = expected.listed_project_ids(dataset)
    first_night()  # the file exists: the reader can open it
    stop = tmp_path / "stop-reading"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db_path), str(stop)], stdout=subprocess.PIPE,
                              text=True)
    nights, spans = [], []  # spans: when each night ran (time.time(), as the reader tells its opens)
    try:
        for night in range(10):  # each night waits for the reader, and ends exact
            api.dataset = _retitled(dataset, night)
            started = time.time()
            outcome = run_night(db_wait_seconds=60.0)
            spans.append((started, time.time()))
            with connect_waiting(db_path, 60.0, read_only=True) as con:  # the reader holds it at times too
                exact = expected.loaded_sessions(con) == expected.sessions(api.dataset, listed)
            nights.append((api.dataset, outcome, exact))
    finally:
        stop.touch()
        _, *opened = map(float, reader.communicate(timeout=60)[0].split())

    failed = [(i, r.exit_code, r.message, exact) for i, (_, r, exact) in enumerate(nights) if r.exit_code or not exact]
    assert failed == [], failed
    # the reader stood in the nights' way: it opened the file while one ran (how often depends on
    # how long the nights take, which the machine decides: no count is asserted)
    during = [t for t in opened if any(start <= t <= end for start, end in spans)]
    assert during, f"the reader opened the file {len(opened)} times, none while a night ran"
    assert listed and len(nights) == 10  # the data had projects to load


def _paused_at_normalize(tmp_path, api, db_path, wait: str) -> tuple[subprocess.Popen, object]:
    """A run with --db-wait `wait`, paused once its fetch is done (the file is not held then)."""
    marker = pause_marker(db_path, "normalize")
    run = start_cli(tmp_path, api.url, db_path, "--db-wait", wait, CEKURA_TEST_HOOK=f"normalize:{marker}")
    wait_for(lambda: marker.exists() or run.poll() is not None, "the run to reach normalize")
    assert run.poll() is None, run.communicate()[1]
    return run, marker


def test_a_reader_holding_the_file_through_the_load_is_waited_for(tmp_path, api, dataset, db_path):
    """The reader takes the file while the run fetches (the file is not held then) and keeps it
    into the load step: dlt's own open waits for it, and the night loads once it lets go."""
    run, marker = _paused_at_normalize(tmp_path, api, db_path, wait="60")
    with database_held(db_path, read_only=True) as holder:
        marker.unlink()  # the run goes on to normalize and load, while the reader holds the file
        said = []
        for line in run.stderr:  # the run says it waits, while the reader holds the file
            said.append(line)
            if "is held by" in line:
                break
        assert run.poll() is None, "the run did not wait for the reader"
        release(holder)
        _, rest = run.communicate(timeout=120)
    stderr = "".join(said) + rest

    assert run.returncode == 0, stderr
    assert "is held by" in stderr and "waiting up to 60 s" in stderr, stderr
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset, expected.listed_project_ids(dataset))


def test_a_reader_holding_the_file_past_the_wait_exits_3_naming_it(tmp_path, api, db_path):
    run, marker = _paused_at_normalize(tmp_path, api, db_path, wait="2")
    with database_held(db_path, read_only=True) as holder:
        marker.unlink()
        _, stderr = run.communicate(timeout=120)
        pid = holder.pid

    assert run.returncode == 3, stderr
    lines = [line for line in stderr.splitlines() if "error" in line.lower() or line.startswith("cekura-sessions:")]
    assert "Traceback" not in stderr, stderr
    assert any(f"PID {pid}" in line and "--db-wait" in line for line in lines), stderr
