"""A database the run creates opens in the DuckDB shell users install (`duckdb-cli` 1.5.x), whose
newest readable storage version is older than what DuckDB 2.0 writes by default (issue 13, item 6)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import duckdb
from cekura_sessions.destination.database import connect
from support.storage import SHELL_1_5_READS, storage_version

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_a_database_the_run_creates_has_a_storage_version_the_1_5_shell_reads(tmp_path):
    db_path = tmp_path / "new.duckdb"
    with connect(db_path, wait_seconds=1.0) as con:  # the run's first connection creates the file
        con.execute("create table t as select 1 as x")

    assert storage_version(db_path) in SHELL_1_5_READS, storage_version(db_path)
    with duckdb.connect(str(db_path), read_only=True) as con:
        tags = con.execute("select tags from duckdb_databases() where database_name = 'new'").fetchone()[0]
    assert tags == {"storage_version": "v1.5.0+"}, tags


def test_duckdb_2_by_default_writes_a_version_the_1_5_shell_cannot_read(tmp_path):
    """The control: without the setting, the header says otherwise, so the check above means something."""
    db_path = tmp_path / "default.duckdb"
    with duckdb.connect(str(db_path)) as con:
        con.execute("create table t as select 1 as x")
    assert storage_version(db_path) not in SHELL_1_5_READS, storage_version(db_path)


def test_a_later_write_keeps_the_file_readable_by_the_1_5_shell(tmp_path):
    """A notebook or the shell opening the file without the setting does not move it forward."""
    db_path = tmp_path / "new.duckdb"
    with connect(db_path, wait_seconds=1.0) as con:
        con.execute("create table t as select 1 as x")
    with duckdb.connect(str(db_path)) as con:
        con.execute("insert into t select range from range(100000)")
        con.execute("checkpoint")
    assert storage_version(db_path) in SHELL_1_5_READS, storage_version(db_path)


def test_readme_conversion_command_moves_an_old_file_to_the_1_5_format(tmp_path):
    """README.md's Troubleshooting: a file DuckDB 2.0 created in its own format, copied as written."""
    line = next(line.strip() for line in README.splitlines() if "copy from database" in line)
    program, flag, code = shlex.split(line)
    assert (program, flag) == (".venv/bin/python", "-c"), line
    with duckdb.connect(str(tmp_path / "cekura.duckdb")) as con:
        con.execute("create schema cekura_raw")
        con.execute("create table cekura_raw.pipeline_runs as select 'run-1' as run_id, 0 as exit_code")
    assert storage_version(tmp_path / "cekura.duckdb") not in SHELL_1_5_READS

    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert storage_version(tmp_path / "cekura-v1.5.duckdb") in SHELL_1_5_READS
    with duckdb.connect(str(tmp_path / "cekura-v1.5.duckdb"), read_only=True) as con:
        assert con.execute("select * from cekura_raw.pipeline_runs").fetchall() == [("run-1", 0)]
