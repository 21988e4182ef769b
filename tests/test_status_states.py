"""`status` beside a running night and after a killed one, and who holds a file named as the
command it runs. Real processes: a run paused at a stage (CEKURA_TEST_HOOK), kill -9."""

from __future__ import annotations

import signal
import time

import pytest
from support.night_processes import pause_marker, run_cli, start_cli, wait_for
from support.processes import run_cli as cekura

pytestmark = pytest.mark.e2e

UNFINISHED = 7  # exit_codes.STATUS, as the README's table says


def test_status_says_a_night_is_running_then_that_a_killed_one_never_finished(tmp_path, api, db_path):
    assert run_cli(tmp_path, api.url, db_path).returncode == 0  # a good night before: the data is fresh
    marker = pause_marker(db_path, "models")
    run = start_cli(tmp_path, api.url, db_path, CEKURA_TEST_HOOK=f"models:{marker}")
    wait_for(lambda: marker.exists() or run.poll() is not None, "the run to reach models")
    assert run.poll() is None, run.communicate()[1]

    running = cekura(tmp_path, "status", "--db", str(db_path), "--db-wait", "0")
    held = cekura(tmp_path, "models", "--db", str(db_path), "--db-wait", "0")
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    after = cekura(tmp_path, "status", "--db", str(db_path), "--db-wait", "5")

    assert running.returncode == 3, running.stdout + running.stderr
    assert "a night is running" in running.stderr and f"cekura-sessions run (PID {run.pid})" in running.stderr, \
        running.stderr
    # the file's holder named as the command it runs, not as its interpreter's path
    assert held.returncode == 3 and f"cekura-sessions run (PID {run.pid})" in held.stderr, held.stderr
    assert after.returncode == UNFINISHED, after.stdout + after.stderr
    assert "unfinished" in after.stderr and "never finished" in after.stderr, after.stderr


def test_status_is_ok_again_once_a_night_finishes_after_the_killed_one(tmp_path, api, db_path):
    marker = pause_marker(db_path, "models")
    run = start_cli(tmp_path, api.url, db_path, CEKURA_TEST_HOOK=f"models:{marker}")
    wait_for(lambda: marker.exists() or run.poll() is not None, "the run to reach models")
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    time.sleep(0.1)

    assert run_cli(tmp_path, api.url, db_path).returncode == 0
    status = cekura(tmp_path, "status", "--db", str(db_path))

    assert status.returncode == 0, status.stdout + status.stderr
