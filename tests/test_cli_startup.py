"""`--help`, `--version`, every command's `--help` and a usage error answer before the pipeline's
libraries load: the console script in a real process, its imports listed by Python itself
(PYTHONPROFILEIMPORTTIME writes one line per module imported). How fast that is:
benchmarks/cli_startup.py."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cekura_sessions.cli import main as cli

pytestmark = pytest.mark.e2e  # the CLI in subprocesses

# what a command loads when it runs, never before: the pipeline's, the fake API's and HTTP libraries
HEAVY = {"dlt", "pyarrow", "duckdb", "django", "rest_framework", "waitress", "requests", "urllib3", "tenacity",
         "pandas", "numpy", "psycopg2", "simdjson"}


def _console_script() -> list[str]:
    script = shutil.which("cekura-sessions", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "cekura_sessions.cli"]


def _commands() -> list[str]:
    [commands] = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(commands.choices)


def _imported(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEKURA_", "SOURCES__"))}
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    done = subprocess.run([*_console_script(), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    # "import time:  self [us] | cumulative | imported package", the package indented by depth
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done, modules


@pytest.mark.parametrize("args, code", [
    pytest.param(["--help"], 0, id="help"),
    pytest.param(["--version"], 0, id="version"),
    pytest.param(["status", "--db-wait", "soon"], 2, id="usage-error-option"),
    pytest.param(["frobnicate"], 2, id="usage-error-command"),
    pytest.param([], 2, id="no-command"),
    *[pytest.param([command, "--help"], 0, id=f"{command}-help") for command in _commands()],
])
def test_answers_without_loading_the_pipeline(args, code, tmp_path):
    done, modules = _imported(args, tmp_path)
    assert done.returncode == code, done.stderr[-2000:]
    assert "cekura_sessions.cli.main" in modules and "argparse" in modules, "no import profile was written"
    loaded = sorted({name.split(".")[0] for name in modules} & HEAVY)
    assert loaded == [], f"`cekura-sessions {' '.join(args)}` imported {loaded}"


def test_a_command_that_runs_still_loads_what_it_needs(tmp_path):
    """The other side: `models` on a missing file imports DuckDB (through destination/database.py) before
    it says the file is missing, so the profile above would have seen the pipeline's libraries."""
    done, modules = _imported(["models", "--db", str(tmp_path / "none.duckdb")], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "duckdb" in modules
