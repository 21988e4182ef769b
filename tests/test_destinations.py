"""The nightly job into either destination, a DuckDB file or a real PostgreSQL (one fixture,
`target`): exact rows over two nights with changes and deletions, a failed project keeping its
rows, recovery after kill -9, a second run refused while one holds the lock, and the API key and
the database password never stored. The CLI runs in real subprocesses against the fake API where
the process is what is tested (kills, the lock, what it prints); what lands in the destination
over two nights is loaded in-process, the first night made once per module and copied (below)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cekura_sessions.fake.data import generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from cekura_sessions.models.declarations import load_declarations
from support import expected, postgres, warm
from support.destinations import DB_PASSWORD, Target, make_target
from support.first_night import copy_dlt_folder, copy_night
from support.processes import CLI, cli_env
from support.secrets import files_holding
from support.settings import API_KEY, DATASET_SPEC, TEST_RETRY

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome

pytestmark = pytest.mark.e2e  # the CLI in subprocesses, dlt loading DuckDB or PostgreSQL



def _env(target: Target, **extra: str) -> dict[str, str]:
    return cli_env(target.folder, **extra)  # dlt's data dir: target.dlt_data_dir


def _run(target: Target, api, *global_options: str, **env: str) -> subprocess.CompletedProcess:
    return warm.run([*CLI, *global_options, "run", "--base-url", api.url, "--db", target.db, "--db-wait", "5"],
                    env=_env(target, **env), capture_output=True, text=True, timeout=180)


def _start(target: Target, api, **env: str) -> subprocess.Popen:
    return warm.Popen([*CLI, "run", "--base-url", api.url, "--db", target.db],
                      env=_env(target, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _raw(target: Target) -> tuple[set, list, set]:
    with target.read() as con:
        return expected.loaded_sessions(con), expected.loaded_scenario_ids(con), expected.loaded_projects(con)


def _assert_exact(target: Target, dataset, what: str) -> None:
    sessions, scenario_ids, projects = _raw(target)
    assert sessions == expected.sessions(dataset), f"{what}: sessions differ"
    assert scenario_ids == expected.scenario_ids(dataset), f"{what}: scenario ids differ"
    assert projects == expected.projects(dataset), f"{what}: projects differ"
    with target.read() as con:
        (modelled,) = con.execute("select count(*) from analytics.sessions").fetchone()
    assert modelled == len(expected.sessions(dataset)), f"{what}: analytics.sessions"


def _wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _night(target: Target, api, **overrides: object) -> RunOutcome:
    """A night in this process, for the tests about what lands in the destination (the process
    itself is the other tests'); `overrides` over its RunConfig."""
    from cekura_sessions.run import night

    settings = {"db": target.db, "api_key": API_KEY, "base_url": api.url, "db_wait_seconds": 5.0,
                "pipelines_dir": str(target.folder / "pipelines"), "retry": TEST_RETRY}
    return night.run(night.RunConfig(**{**settings, **overrides}))


# --- a first night several tests start from -----------------------------------------------------
# A night costs one to two seconds of CPU. Where a test's first night is the same plain night of the
# suite's data, it is made once per module and destination kind and copied into the test's
# destination: the DuckDB file (support/first_night.copy_night), or the PostgreSQL database, which
# the server copies from it as from a template; with dlt's folder, whose marker
# (run/dlt_pipeline.py) is pointed at the copy, so the next night goes on from it as from its own.
# The night read a fake API of its own serving the suite's data whole, as `api` does
# (support/first_night.py says why whole).


@pytest.fixture(scope="module")
def made_first_nights(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Target]:
    """`made(kind, server)`: the plain first night into a destination of `kind`, made on first use."""
    made: dict[str, Target] = {}

    def made_for(kind: str, server: postgres.PostgresServer | None) -> Target:
        if kind not in made:
            first = make_target(kind, tmp_path_factory.mktemp(f"first-night-{kind}"), server)
            with FakeCekuraApi(generate(DATASET_SPEC), api_key=API_KEY, faults=Faults()) as api:
                outcome = _night(first, api)
            assert outcome.exit_code == 0, f"the first night failed: {outcome.message}"
            made[kind] = first
        return made[kind]

    return made_for


@pytest.fixture
def after_night_1(request: pytest.FixtureRequest, target: Target, dataset, made_first_nights) -> Target:
    """`target`, holding what a plain first night of the suite's data leaves (the module's, copied)."""
    assert dataset == generate(DATASET_SPEC), "the copied first night is of the suite's data, unchanged"
    if target.kind == "duckdb":
        copy_night(made_first_nights("duckdb", None).folder, Path(target.db), target.folder / "pipelines")
    else:
        from cekura_sessions.destination.address import parse_destination  # imports dlt: not while collecting

        server = request.getfixturevalue("postgres_server")
        made = made_first_nights("postgres", server)
        target = make_target("postgres", target.folder, server, template=made.db)
        copy_dlt_folder(made.folder / "pipelines", target.folder / "pipelines", str(parse_destination(target.db)))
    return target


def test_two_nights_with_changes_and_deletions_end_exact(after_night_1, api, dataset):
    target = after_night_1  # night 1, made once for the module's tests, asserted here on the test's copy
    _assert_exact(target, dataset, "night 1")

    tomorrow = dataset.next_night(seed=5)  # statuses move, lists change, sessions and a project's listing emptied
    assert tomorrow.last_changes.get("deleted") and tomorrow.last_changes.get("project_emptied"), tomorrow.last_changes
    api.dataset = tomorrow
    second = _night(target, api)

    assert second.exit_code == 0, second.message
    _assert_exact(target, tomorrow, "night 2")


def test_a_failed_project_keeps_its_rows_and_the_others_move_on(after_night_1, api, dataset):
    target = after_night_1
    tomorrow = dataset.next_night(seed=6)
    listed = expected.listed_project_ids(tomorrow)
    victim = next(p for p in listed if dataset.sessions[p] and tomorrow.sessions[p] != dataset.sessions[p])
    api.dataset = tomorrow
    api.faults = Faults(always={victim: "500"})

    # without the SQL models: what is asserted is the raw tables' (conftest.py's `load` says why)
    result = _night(target, api, build_models=False)

    assert result.exit_code == 1, result.message
    sessions, scenario_ids, _ = _raw(target)
    assert {s for s in sessions if s[7] == victim} == expected.sessions(dataset, [victim]), "its rows changed"
    others = [p for p in listed if p != victim]
    assert {s for s in sessions if s[7] != victim} == expected.sessions(tomorrow, others)
    assert [r for r in scenario_ids if r[1] == victim] == expected.scenario_ids(dataset, [victim])


@pytest.mark.parametrize("stage", ["load", "models"])
def test_a_run_killed_with_9_is_recovered_by_the_next_night(target, api, dataset, stage):
    marker = target.folder / f"paused-{stage}"
    process = _start(target, api, CEKURA_TEST_HOOK=f"{stage}:{marker}")
    try:
        _wait_for(marker.exists, f"the run to pause at {stage}")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)

    tomorrow = dataset.next_night(seed=7)
    api.dataset = tomorrow
    result = _run(target, api)

    assert result.returncode == 0, result.stderr
    _assert_exact(target, tomorrow, "the night after the kill")
    with target.read() as con:
        runs = con.execute("select status, finished_at is null from cekura_raw.pipeline_runs "
                           "order by started_at").fetchall()
    assert runs == [("running", True), ("succeeded", False)]


def test_a_second_run_is_refused_while_one_holds_the_database(target, api, dataset):
    marker = target.folder / "paused-models"
    holder = _start(target, api, CEKURA_TEST_HOOK=f"models:{marker}")
    try:
        _wait_for(marker.exists, "the first run to pause before its models")
        second = _run(target, api)
        marker.unlink()  # the first run goes on
        out, err = holder.communicate(timeout=120)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)

    assert second.returncode == 3, second.stderr
    assert "another run holds" in second.stderr and "nothing was touched" in second.stderr, second.stderr
    assert holder.returncode == 0, err
    _assert_exact(target, dataset, "after the refused run")
    with target.read() as con:
        (runs,) = con.execute("select count(*) from cekura_raw.pipeline_runs").fetchone()
    assert runs == 1, "the refused run left a ledger row"


def test_the_key_and_the_database_password_are_never_stored_or_printed(target, api, dataset):
    first = _run(target, api, "--log-level", "DEBUG")
    tomorrow = copy.deepcopy(dataset)
    tomorrow.sessions[expected.listed_project_ids(dataset)[0]].pop()
    api.dataset = tomorrow
    second = _run(target, api, "--log-level", "DEBUG", "--log-format", "json")
    broken = warm.run([*CLI, "run", "--base-url", api.url, "--db", target.db.replace("/t_", "/missing_", 1)],
                      env=_env(target), capture_output=True, text=True, timeout=120)

    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    secrets = [API_KEY] + ([DB_PASSWORD] if target.kind == "postgres" else [])
    said = first.stdout + first.stderr + second.stdout + second.stderr + broken.stdout + broken.stderr
    for secret in secrets:
        assert secret not in said, f"{secret!r} was printed"
        assert secret not in target.all_text(), f"{secret!r} is in a database value"
        assert files_holding(target.folder, secret.encode()) == [], f"{secret!r} is in these files"
    if target.kind == "postgres":
        assert broken.returncode == 2 and "***" in broken.stderr, broken.stderr


def test_models_check_and_status_read_either_destination(after_night_1):
    target = after_night_1  # what they read: the module's first night, run in this process (the CLI's
    # nights are the other tests')
    said = ""
    for command in (["models"], ["check", "--show", "3"], ["status"]):
        result = warm.run([*CLI, *command, "--db", target.db], env=_env(target), capture_output=True, text=True,
                          timeout=120)
        said += result.stdout + result.stderr
        # check: the generated data trips warnings only; status: the night just ran
        assert result.returncode == 0, f"{command}: {result.stderr}"
    assert f"built {len(load_declarations())} models" in said and "ok: the newest run" in said, said
    assert DB_PASSWORD not in said
