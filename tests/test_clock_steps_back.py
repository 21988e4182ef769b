"""No step depends on the clock moving forward (issue 19 item 5): a night run two days in the
past (libfaketime, LD_PRELOAD into a real `cekura-sessions run` process) records its status
changes, warns once, and the night after it compares against it, not against the older one."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import duckdb
import libfaketime
import pytest
from cekura_sessions.fake.data import FakeDataset
from cekura_sessions.fake.server import FakeCekuraApi
from support import expected
from support.processes import run_cli

pytestmark = pytest.mark.e2e

LIBFAKETIME = Path(libfaketime._get_shared_lib("libfaketime.so.1"))  # the library the wheel ships


def _night(api: FakeCekuraApi, db_path: Path, tmp_path: Path, faketime: str | None = None):
    env = {}
    if faketime is not None:
        # monotonic clocks left alone: timeouts and pacing measure durations, not dates
        env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": faketime, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
               "FAKETIME_DONT_RESET": "1"}
    return run_cli(tmp_path, "run", "--db", str(db_path), "--base-url", api.url, "--no-models", **env)


def _with_status(dataset: FakeDataset, session_id: int, status: str, updated_at: str) -> FakeDataset:
    changed = copy.deepcopy(dataset)
    for rows in changed.sessions.values():
        for s in rows:
            if s["id"] == session_id:
                s.update(status=status, updated_at=updated_at)
    return changed


def _history(db_path: Path, session_id: int) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(
            "select status, updated_at from cekura_raw.session_status_history where session_id = ? "
            "order by observation", [session_id]).fetchall()


def test_a_night_whose_clock_stepped_back_records_its_changes(api, dataset, db_path, tmp_path):
    assert LIBFAKETIME.exists(), LIBFAKETIME
    first = _night(api, db_path, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    project = expected.listed_project_ids(dataset)[0]
    session = dataset.sessions[project][0]
    statuses = [s for s in ("pending", "in_progress", "completed", "failed") if s != session["status"]]
    behind = _with_status(dataset, session["id"], statuses[0], "2026-11-02T10:00:00Z")
    api.dataset = behind

    stepped_back = _night(api, db_path, tmp_path, faketime="-2d")

    assert stepped_back.returncode == 0, stepped_back.stdout + stepped_back.stderr
    clock_lines = [line for line in stepped_back.stderr.splitlines() if "the clock stepped back" in line]
    assert len(clock_lines) == 1, stepped_back.stderr
    want = [(session["status"], session["updated_at"]), (statuses[0], "2026-11-02T10:00:00Z")]
    assert _history(db_path, session["id"]) == want

    api.dataset = _with_status(behind, session["id"], statuses[1], "2026-11-03T10:00:00Z")
    after = _night(api, db_path, tmp_path)

    assert after.returncode == 0, after.stdout + after.stderr
    assert "the clock stepped back" not in after.stderr
    assert _history(db_path, session["id"]) == [*want, (statuses[1], "2026-11-03T10:00:00Z")]
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute("select count(*) from cekura_raw.session_status_history").fetchone()[0]
    assert rows == len(expected.sessions(dataset)) + 2, "a night compared against an older observation"
