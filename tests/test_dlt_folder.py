"""dlt's working folder (issue 13, items 1 and 5): one per database file, `<db>.dlt/` beside it,
started afresh when the file it served is not this one, readable by `dlt pipeline`, and flat
across nights. Real runs (the CLI in subprocesses, or in process) against the fake API."""

from __future__ import annotations

import shlex
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.fake.server import Faults
from support import expected, warm
from support.night_processes import (
    AS_THE_CLI_RUNS,
    cli_env,
    folder_bytes,
    pause_marker,
    run_cli,
    start_cli,
    wait_for,
)

pytestmark = pytest.mark.e2e  # dlt loading real files

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


# The SQL models are built in the database file after dlt's load, without dlt (run/night.py's
# _after_load): what dlt's folder does shows in the loads and the raw tables these tests read, so the
# nights they load leave the models out (--no-models; build_models=False in process).
NO_MODELS = "--no-models"


def _assert_exact(db_path, dataset, project_ids=None) -> None:
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset, project_ids), db_path.name
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(dataset, project_ids), db_path.name


def test_a_failed_night_into_one_file_leaves_the_other_file_loadable(tmp_path, api, dataset):
    """The issue's reproduction: c1 loads; c2's first night fails on a 404 (exit 2); every later
    night into c2 failed with `CatalogException: ... does not exist!` while the folder was shared."""
    first, second = tmp_path / "c1.duckdb", tmp_path / "c2.duckdb"
    victim = expected.listed_project_ids(dataset)[0]
    assert run_cli(tmp_path, api.url, first, NO_MODELS).returncode == 0

    api.faults = Faults(always={victim: "404"})
    failed = run_cli(tmp_path, api.url, second, "--project-id", str(victim))
    assert failed.returncode == 2, failed.stderr
    api.faults = Faults()
    again = run_cli(tmp_path, api.url, second, NO_MODELS)

    assert again.returncode == 0, again.stderr
    _assert_exact(second, dataset)
    _assert_exact(first, dataset)
    assert sorted(p.name for p in tmp_path.glob("*.dlt")) == ["c1.duckdb.dlt", "c2.duckdb.dlt"]
    assert not (tmp_path / "dlt-data" / "pipelines").exists(), "something used dlt's machine-wide folder"


def test_a_file_replaced_at_the_same_path_gets_a_fresh_folder(api, dataset, db_path, run_night, first_night):
    """The folder beside a deleted file must not make dlt believe the new file has its tables.
    In process, with the folder the CLI uses (`<db>.dlt/`)."""
    victim = expected.listed_project_ids(dataset)[0]
    first_night(**AS_THE_CLI_RUNS)
    db_path.unlink()

    api.faults = Faults(always={victim: "404"})
    assert run_night(pipelines_dir=None, details=None, project_ids=[victim]).exit_code == 2
    api.faults = Faults()
    again = run_night(**AS_THE_CLI_RUNS, build_models=False)

    assert again.exit_code == 0, again.message
    _assert_exact(db_path, dataset)


def test_two_runs_into_two_files_at_once_each_load_their_own(tmp_path, api, dataset):
    """While one run waits with its package normalized, a run into another file starts, loads and
    ends; the first then loads. Sharing a folder, the second discarded the first's package
    (LoadPackageNotFound) or loaded it into the wrong file."""
    listed = expected.listed_project_ids(dataset)
    mine, theirs = listed[: len(listed) // 2], listed[len(listed) // 2 :]
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    marker = pause_marker(first, "load")
    waiting = start_cli(tmp_path, api.url, first, NO_MODELS, *_project_args(mine), CEKURA_TEST_HOOK=f"load:{marker}")
    try:
        wait_for(marker.exists, "the first run paused before its load")
        other = run_cli(tmp_path, api.url, second, NO_MODELS, *_project_args(theirs))
        marker.unlink()
        _, stderr = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()

    assert other.returncode == 0, other.stderr
    assert waiting.returncode == 0, stderr
    _assert_exact(first, dataset, mine)
    _assert_exact(second, dataset, theirs)


def test_readme_dlt_pipeline_commands_read_the_database_folder(tmp_path, first_night):
    """The commands README.md gives (its "dlt's working folder" section), run as written beside
    a database that a night loaded."""
    commands = [shlex.split(line) for line in README.splitlines() if line.startswith(".venv/bin/dlt pipeline")]
    assert [c[-1] for c in commands] == ["info", "trace"], commands
    # the night is not the subject: a copy of a plain first night as the CLI runs it, its dlt folder
    # beside the file with the trace and the one loaded package the night left (it exited 0)
    first_night(**AS_THE_CLI_RUNS)
    shown = {}
    for command in commands:
        done = warm.run([*warm.DLT, *command[1:]], capture_output=True, text=True, timeout=120,
                        env=cli_env(tmp_path), cwd=tmp_path)
        assert done.returncode == 0, f"{shlex.join(command)}: {done.stderr}"
        shown[command[-1]] = done.stdout
    assert "Found pipeline cekura_sessions in cekura.duckdb.dlt" in shown["info"], shown["info"]
    assert "Has 1 completed load packages" in shown["info"], shown["info"]
    assert "Run started at" in shown["trace"] and "load" in shown["trace"], shown["trace"]


def test_the_dlt_folder_stays_flat_across_nights(api, dataset, db_path, load):
    """Loaded packages are pruned to the newest, whose data files are gone; recovery needs only
    pending ones. Before: every package kept whole (3.2 MB after 10 nights of 10,000 sessions)."""
    folder = db_path.with_name("cekura.duckdb.dlt") / "cekura_sessions"
    night, sizes = dataset, []
    for seed in range(5):
        if seed:
            night = night.next_night(seed=30 + seed)
            api.dataset = night
        outcome = load(pipelines_dir=None)
        assert outcome.exit_code in (0, 1), outcome.message
        loaded = sorted((folder / "load" / "loaded").iterdir())
        assert len(loaded) == 1, f"night {seed + 1}: {len(loaded)} loaded packages kept"
        completed = loaded[0] / "completed_jobs"
        job_files = [p.name for p in completed.glob("*")] if completed.exists() else []
        assert job_files == [], f"night {seed + 1}: the loaded package kept its data files {job_files}"
        assert not list((folder / "load" / "normalized").iterdir()), "a package is pending after a finished night"
        sizes.append(folder_bytes(folder))
    _assert_exact(db_path, night)
    # the folder holds the same kinds of file every night (schema, state, trace, one package's
    # metadata): its size varies only with what those say, never with how many nights went by
    assert max(sizes[1:]) < 2 * sizes[0], f"folder bytes per night: {sizes}"


def _project_args(project_ids: list[int]) -> list[str]:
    return [arg for pid in project_ids for arg in ("--project-id", str(pid))]
