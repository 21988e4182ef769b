"""A whole `cekura-sessions run` in a real subprocess: its environment, a run, a paused run, and
what a run leaves in a database folder."""

from __future__ import annotations

import fcntl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from support import warm
from support.processes import CLI, cli_env


def run_cli(tmp_path: Path, base_url: str, db_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return warm.run(
        [*CLI, "run", "--base-url", base_url, "--db", str(db_path), "--db-wait", "5", *args],
        env=cli_env(tmp_path, **env), capture_output=True, text=True, timeout=180,
    )


# what `cekura-sessions run` would use: the dlt folder beside the database, the configured
# details, --db-wait 5 (run_night's or first_night's overrides)
AS_THE_CLI_RUNS = {"pipelines_dir": None, "details": None, "db_wait_seconds": 5.0}


def night_as_the_cli_runs_it(run_night: Callable[..., object]) -> object:
    """A night in this process (conftest.py's `run_night`) as the CLI runs it (AS_THE_CLI_RUNS),
    for the nights around the process a test is about (the one it kills or signals)."""
    return run_night(**AS_THE_CLI_RUNS)


def start_cli(tmp_path: Path, base_url: str, db_path: Path, *args: str, **env: str) -> subprocess.Popen:
    """A run in the background; its stderr is kept (read it after it ended)."""
    return warm.Popen(
        [*CLI, "run", "--base-url", base_url, "--db", str(db_path), "--db-wait", "5", *args],
        env=cli_env(tmp_path, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def pause_marker(db_path: Path, stage: str) -> Path:
    """Where a run paused at `stage` (CEKURA_TEST_HOOK=<stage>:<this path>) creates its marker;
    removing it lets the run go on."""
    return db_path.with_name(f"{db_path.name}.paused-{stage}")


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def lock_is_free(db_path: Path) -> bool:
    """Whether a run could take the database's lock now (destination/lock.py's flock on `<db>.lock`)."""
    with open(db_path.with_name(db_path.name + ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
