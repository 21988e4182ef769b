"""The CLI as a separate process, and a process that holds a DuckDB file, for the tests that
need real processes (exit codes, streams, file locks)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import warm
from .settings import API_KEY

CLI = warm.CLI


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any CEKURA_* setting, with the test key and a dlt folder of the
    test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEKURA_", "SOURCES__"))}
    env.update(CEKURA_API_KEY=API_KEY, RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(tmp_path / "dlt-data"))
    env.update(SOURCES__CEKURA__ACCEPT_REMOVALS="true")  # as in conftest.py: the guard's tests say false
    env.update(extra)
    return env


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return warm.run([*CLI, *args], env=cli_env(tmp_path, **env), capture_output=True, text=True, timeout=180)


@contextmanager
def database_held(db_path: Path, read_only: bool = False) -> Iterator[subprocess.Popen]:
    """Another process holds `db_path` (read-write, as a notebook kernel would, or read-only, as
    a dashboard does) until the block ends; its pid is the Popen's."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
         "print('holding', flush=True); sys.stdin.read()",
         str(db_path), "ro" if read_only else "rw"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding", "the holder could not open the file"
        yield holder
    finally:
        release(holder)


def release(holder: subprocess.Popen) -> None:
    """The holder closes the file and exits (idempotent)."""
    if holder.poll() is None:
        holder.stdin.close()
        holder.wait(timeout=60)
