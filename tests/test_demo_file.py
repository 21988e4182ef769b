"""What `cekura-sessions demo` leaves: a database the DuckDB 1.5 shell opens (the README's shell
commands), and dlt's working folder beside it (issue 13, items 1 and 6)."""

from __future__ import annotations

import subprocess

import pytest
from support.night_processes import CLI, cli_env
from support.storage import SHELL_1_5_READS, storage_version

pytestmark = pytest.mark.e2e  # the demo runs the whole pipeline (dlt) in a subprocess


def test_demo_database_opens_in_the_1_5_shell_with_its_dlt_folder_beside_it(tmp_path):
    result = subprocess.run(
        [*CLI, "demo", "--db", "demo.duckdb", "--projects", "3", "--sessions-per-project", "10"],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=180,
    )

    assert result.returncode == 0, result.stderr
    assert storage_version(tmp_path / "demo.duckdb") in SHELL_1_5_READS
    assert (tmp_path / "demo.duckdb.dlt" / "cekura_sessions" / "state.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["demo.duckdb.dlt"], "a folder besides dlt's"
