"""What `cekura-sessions demo` leaves: a database the DuckDB 1.5 shell opens (the README's shell
commands), and dlt's working folder beside it (issue 13, items 1 and 6)."""

from __future__ import annotations

import duckdb
import pytest
from support import warm
from support.night_processes import CLI, cli_env
from support.processes import run_cli
from support.storage import SHELL_1_5_READS, storage_version

pytestmark = pytest.mark.e2e  # the demo runs the whole pipeline (dlt) in a subprocess


def test_demo_database_opens_in_the_1_5_shell_with_its_dlt_folder_beside_it(tmp_path):
    result = warm.run(
        [*CLI, "demo", "--db", "demo.duckdb", "--projects", "3", "--sessions-per-project", "10"],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=180,
    )

    assert result.returncode == 0, result.stderr
    assert storage_version(tmp_path / "demo.duckdb") in SHELL_1_5_READS
    assert (tmp_path / "demo.duckdb.dlt" / "cekura_sessions" / "state.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["demo.duckdb.dlt"], "a folder besides dlt's"


def test_demo_never_writes_into_a_database_it_did_not_make(tmp_path, first_night, db_path):
    """`demo --db` pointed at a nightly database: one line, exit 2, the database untouched."""
    first_night()  # a nightly database (its night exited 0)
    with duckdb.connect(str(db_path), read_only=True) as con:
        before = con.execute("select count(*), sum(hash(session_id)) from analytics.sessions").fetchone()

    result = run_cli(tmp_path, "demo", "--db", str(db_path), "--projects", "2")

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the demo did not make" in lines[0] and "--db demo.duckdb" in lines[0], lines
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(*), sum(hash(session_id)) from analytics.sessions").fetchone() == before


def test_demo_runs_again_into_its_own_file_at_any_path(tmp_path):
    own = tmp_path / "elsewhere.duckdb"
    first = run_cli(tmp_path, "demo", "--db", str(own), "--projects", "2")
    second = run_cli(tmp_path, "demo", "--db", str(own), "--projects", "2")

    assert (first.returncode, second.returncode) == (0, 0), second.stdout + second.stderr
