"""Hygiene (issue 19 item 7): output under a locale that is not UTF-8 replaces what it cannot
encode; the exit code, the ledger's exit code and the mailed line agree when the disk is full.
Real `cekura-sessions` processes; a full disk is a file size limit (RLIMIT_FSIZE), which makes
every write past it fail as a full disk does (EFBIG instead of ENOSPC)."""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.fake.data import DataSpec, FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import warm
from support.first_night import FILE, copy_night
from support.processes import CLI, cli_env, run_cli
from support.settings import API_KEY

pytestmark = pytest.mark.e2e

GREEK = "Ωμέγα 客服"  # outside Latin-1


@pytest.fixture(scope="module")
def data() -> FakeDataset:
    """The data of the module's first night (and, moved on a night, of the full disks' nights)."""
    return generate(DataSpec(projects=4, sessions_per_project=200, seed=1))


@pytest.fixture(scope="module")
def first_night_made(data: FakeDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a plain first night of `data` that `cekura-sessions run` loaded (its FILE
    and the dlt folder beside it): each test starts from a copy (support/first_night.py's
    copy_night), so the module runs that night once, not once a test. No test is about it."""
    folder = tmp_path_factory.mktemp("first-night")
    with FakeCekuraApi(data, api_key=API_KEY, faults=Faults()) as api:
        first = run_cli(folder, "run", "--db", str(folder / FILE), "--base-url", api.url)
    assert first.returncode == 0, first.stdout + first.stderr
    return folder


def test_status_under_a_latin1_locale_replaces_what_it_cannot_encode(first_night_made, db_path, tmp_path):
    # the night is not the subject: a copy of the module's, every project's name then set where a
    # night stores the name the API gives and status reads it (cekura_raw.projects: run/status.py's
    # project_freshness)
    copy_night(first_night_made, db_path, None)
    with duckdb.connect(str(db_path)) as con:
        con.execute("update cekura_raw.projects set name = ?", [GREEK])

    shown = run_cli(tmp_path, "status", "--db", str(db_path), PYTHONIOENCODING="latin-1")

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Traceback" not in shown.stderr and "UnicodeEncodeError" not in shown.stderr, shown.stderr
    assert GREEK.encode("latin-1", "replace").decode("latin-1") in shown.stdout, shown.stdout


def _night_with_file_limit(api: FakeCekuraApi, db_path: Path, tmp_path: Path,
                           limit: int) -> subprocess.CompletedProcess:
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    log_file = tmp_path / "night.log"
    return warm.run([*CLI, "--log-file", str(log_file), "run", "--db", str(db_path), "--base-url", api.url],
                    env=cli_env(tmp_path), capture_output=True, text=True, timeout=300, preexec_fn=limited)


def _ledger(db_path: Path) -> dict[str, tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute("select run_id, status, exit_code, error from cekura_raw.pipeline_runs").fetchall()
    return {row[0]: row[1:] for row in rows}


@pytest.mark.parametrize("limit", [
    pytest.param(2 << 10, id="log-file-and-ledger-end-full"),
    pytest.param(64 << 10, id="load-full"),
])
def test_a_full_disk_gives_one_exit_code_in_the_process_the_ledger_and_the_mailed_line(limit, data, first_night_made,
                                                                                       db_path, tmp_path):
    copy_night(first_night_made, db_path, None)  # the night before, which exited 0
    with FakeCekuraApi(data.next_night(seed=9), api_key=API_KEY, faults=Faults()) as api:
        full = _night_with_file_limit(api, db_path, tmp_path, limit)

    mailed = full.stdout.strip().splitlines()
    assert len(mailed) == 1, full.stdout + full.stderr
    match = re.match(r"cekura-sessions run (\w+) exited (\d+), fatal: ", mailed[0])
    assert match, mailed[0]
    run_id, code = match.group(1), int(match.group(2))
    assert code == full.returncode == 2, mailed[0]
    assert "the disk is full" in mailed[0] and "unexpected" not in mailed[0], mailed[0]
    status, exit_code, error = _ledger(db_path)[run_id]
    if exit_code is None:  # the disk had no room for the run's end either: the line says so
        assert status == "running" and "the ledger could not record the run's end" in mailed[0], mailed[0]
    else:
        assert (status, exit_code) == ("failed", 2) and "the disk is full" in error, (status, exit_code, error)
