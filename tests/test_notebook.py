"""The analysis notebook: ships without outputs, runs top to bottom on a fresh demo database, and
never holds the DuckDB file while its kernel stays open."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import nbformat
import pytest
from cekura_sessions.fake.data import DataSpec, FakeDataset, generate, parse_ts
from cekura_sessions.fake.server import FakeCekuraApi
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode
from support import warm
from support.settings import API_KEY

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "session_analysis.ipynb"
# completion rate per project, weekly trend of all projects, daily rate of the largest projects,
# durations, top scenarios, what happens inside sessions, status moves
FIGURES = 7
CELL_TIMEOUT_SECONDS = 60
# the demo's data: as of a fixed day, so the figures' expected values are computed from it here,
# then a second night (next_night) so sessions move between statuses
AS_OF = date(2026, 11, 1)
SPEC = DataSpec(projects=8, sessions_per_project=120, as_of=AS_OF)
NIGHT_SEED = 1
MIN_DAY_SESSIONS = 5  # the notebook's: a day's own rate is drawn from this many sessions on


def _code_cells(nb: NotebookNode) -> list[NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _images(nb: NotebookNode) -> list[int]:
    """Index of the code cell of every image/png output."""
    return [
        index
        for index, cell in enumerate(_code_cells(nb))
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def _kernel_manager() -> AsyncKernelManager:
    """python3 of this interpreter's environment: its own kernelspec, or ipykernel's built-in one
    (argv = sys.executable). A user-level python3 kernelspec may point at another Python."""
    env_kernels = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    specs = KernelSpecManager(kernel_dirs=[str(env_kernels)], ensure_native_kernel=True)
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _kernel_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"CEKURA_DB", "MPLBACKEND"}}
    return {**env, "RUNTIME__DLTHUB_TELEMETRY": "false", **overrides}


def _build_demo(workdir: Path) -> Path:
    """The demo's database (SPEC's data), then the night after it (SPEC's data .next_night) run into it."""
    db = workdir / "demo.duckdb"
    result = warm.run(
        [sys.executable, "-m", "cekura_sessions.cli", "demo", "--db", str(db), "--projects", str(SPEC.projects),
         "--sessions-per-project", str(SPEC.sessions_per_project), "--as-of", AS_OF.isoformat()],
        cwd=workdir, env=_kernel_env(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, f"demo exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    with FakeCekuraApi(generate(SPEC).next_night(NIGHT_SEED), api_key=API_KEY) as api:
        night = warm.run(
            [sys.executable, "-m", "cekura_sessions.cli", "run", "--base-url", api.url, "--db", str(db),
             "--accept-removals"],  # the night empties a project: its removal is meant
            cwd=workdir, env=_kernel_env(CEKURA_API_KEY=API_KEY), capture_output=True, text=True, timeout=180,
        )
    assert night.returncode == 0, f"second night exited {night.returncode}:\n{night.stdout}\n{night.stderr}"
    return db


def _client(nb: NotebookNode, cwd: Path) -> NotebookClient:
    return NotebookClient(
        nb, km=_kernel_manager(), timeout=CELL_TIMEOUT_SECONDS, shutdown_kernel="immediate",
        resources={"metadata": {"path": str(cwd)}},
    )


def _run_in_kernel(client: NotebookClient, code: str) -> str:
    """Run code in the client's live kernel and return its stdout (the notebook is left as run)."""
    cell = nbformat.v4.new_code_cell(code)
    executed = client.nb
    client.nb = nbformat.v4.new_notebook(cells=[cell])  # execute_cell stores the cell at its index
    try:
        client.execute_cell(cell, 0)
    finally:
        client.nb = executed
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def live_run(demo_db: Path) -> Iterator[NotebookClient]:
    """The notebook executed with CEKURA_DB = the demo database; its kernel stays alive."""
    client = _client(nbformat.read(NOTEBOOK, as_version=4), NOTEBOOK.parent)
    with client.setup_kernel(env=_kernel_env(CEKURA_DB=str(demo_db)), cleanup_kc=True):
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index)
        yield client


def test_notebook_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    dirty = [
        (index, cell.execution_count, len(cell.outputs))
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.execution_count is not None or cell.outputs)
    ]
    assert dirty == [], f"(cell, execution_count, outputs) of cells not cleared: {dirty}"
    assert nb.metadata.kernelspec.name == "python3", nb.metadata.kernelspec


def test_notebook_reads_analytics_only_read_only() -> None:
    source = "\n".join(cell.source for cell in _code_cells(nbformat.read(NOTEBOOK, as_version=4)))
    # duckdb.connect, or the project's connect that waits for a run writing the file
    connects = re.findall(r"(?:duckdb\.connect|connect_waiting)\([^)]*\)", source)
    assert connects and all("read_only=True" in call for call in connects), connects
    assert source.count("psycopg2.connect(") == source.count("set_session(readonly=True"), "a PostgreSQL session not read-only"
    tables = re.findall(r"\b(?:from|join)\s+(\w+)\.(\w+)\b(?!\s+import)", source, flags=re.IGNORECASE)
    # information_schema: the catalog (is a model there); cekura_sessions: the package, imported
    schemas = {schema for schema, _ in tables} - {"information_schema", "cekura_sessions"}
    assert schemas == {"analytics"}, f"schemas read: {schemas}"


@pytest.mark.e2e  # the demo CLI in a subprocess and a live kernel
def test_notebook_runs_with_one_image_per_figure(live_run: NotebookClient) -> None:
    images = _images(live_run.nb)
    shows = [
        index
        for index, cell in enumerate(_code_cells(live_run.nb))
        for _ in re.findall(r"plt\.show\(\)", cell.source)
    ]
    assert len(images) == FIGURES, f"image outputs in code cells {images}, want {FIGURES}"
    assert images == shows, f"cells of images {images} != cells of plt.show() calls {shows}"


@pytest.mark.e2e  # the demo CLI in a subprocess and a live kernel
def test_notebook_kernel_is_this_environment(live_run: NotebookClient) -> None:
    got = _run_in_kernel(live_run, "import sys; print(sys.prefix)").strip()
    assert Path(got).resolve() == Path(sys.prefix).resolve(), f"kernel runs {got}, tests run {sys.prefix}"


@pytest.mark.e2e  # the demo CLI in a subprocess and a live kernel
def test_notebook_kernel_alive_does_not_hold_database(live_run: NotebookClient, demo_db: Path) -> None:
    assert live_run.km is not None and live_run.km.has_kernel, "the kernel should still be running"
    writer = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('create table t(x int)')"
    write = subprocess.run(
        [sys.executable, "-c", writer, str(demo_db)], capture_output=True, text=True, timeout=60
    )
    assert write.returncode == 0, f"writer blocked while the kernel is alive:\n{write.stderr}"
    # and the kernel still reads after the file changed under it
    count_sql = "select count(*) from analytics.sessions"
    got = _run_in_kernel(live_run, f"print(int(query({count_sql!r}).iloc[0, 0]))")
    with duckdb.connect(str(demo_db), read_only=True) as con:
        want = con.execute(count_sql).fetchone()[0]
    assert int(got) == want > 0, f"kernel counted {got!r}, the file holds {want}"


@pytest.mark.e2e  # the demo CLI in a subprocess and a live kernel
def test_notebook_finds_demo_db_in_repo_root_by_default(demo_db: Path, tmp_path: Path) -> None:
    """Out of the box: no CEKURA_DB, the kernel runs in notebooks/, demo.duckdb is in the repo root."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(NOTEBOOK, notebooks / NOTEBOOK.name)
    shutil.copy(demo_db, tmp_path / "demo.duckdb")
    client = _client(nbformat.read(notebooks / NOTEBOOK.name, as_version=4), notebooks)
    with client.setup_kernel(env=_kernel_env(), cleanup_kc=True):
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index)
        got = _run_in_kernel(client, "print(DB)").strip()
    assert Path(got) == (tmp_path / "demo.duckdb").resolve(), got
    assert len(_images(client.nb)) == FIGURES


def _stdout(cell: NotebookNode) -> str:
    return "".join(o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stdout")


def _loaded_nothing(folder: Path) -> Path:
    """A database as a first run leaves it when the key sees no projects: models built, no rows."""
    db = folder / "empty.duckdb"
    with FakeCekuraApi(generate(DataSpec(projects=0)), api_key=API_KEY) as api:
        result = warm.run(
            [sys.executable, "-m", "cekura_sessions.cli", "run", "--base-url", api.url, "--db", str(db)],
            cwd=folder, env=_kernel_env(CEKURA_API_KEY=API_KEY, DLT_DATA_DIR=str(folder / "dlt")),
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    return db


def _new_file(folder: Path) -> Path:
    """A DuckDB file nothing was ever loaded into (no analytics schema at all)."""
    db = folder / "new.duckdb"
    duckdb.connect(str(db)).close()
    return db


@pytest.mark.e2e  # the CLI in a subprocess and a live kernel
@pytest.mark.parametrize("make_db", [
    pytest.param(_loaded_nothing, id="a-run-that-found-no-sessions"),
    pytest.param(_new_file, id="a-new-file"),
])
def test_notebook_on_an_empty_database_says_no_data_yet(tmp_path: Path, make_db: Callable[[Path], Path]) -> None:
    db = make_db(tmp_path)
    client = _client(nbformat.read(NOTEBOOK, as_version=4), NOTEBOOK.parent)
    with client.setup_kernel(env=_kernel_env(CEKURA_DB=str(db)), cleanup_kc=True):
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index)  # raises on the first cell that fails

    said = [_stdout(cell) for cell in _code_cells(client.nb)]
    first = next(n for n, text in enumerate(said) if text.startswith("database: ")) + 1
    errors = [o for cell in _code_cells(client.nb) for o in cell.outputs if o.output_type == "error"]
    assert errors == [] and _images(client.nb) == [], (errors, _images(client.nb))
    assert first < len(said) - 1, said
    for n, text in enumerate(said[first:], first):
        assert text.startswith(f"no data yet: {db.resolve()} holds no sessions"), f"code cell {n} said {text!r}"
        assert text.count("\n") == 1, f"code cell {n} said more than that: {text!r}"


@pytest.mark.e2e  # the demo CLI in a subprocess and a live kernel
def test_notebook_daily_axis_names_the_month_of_every_tick(live_run: NotebookClient) -> None:
    shown = json.loads(_run_in_kernel(live_run, (
        "import json\n"
        "daily_fig.canvas.draw()\n"
        "ax = daily_axes[-1, 0]\n"
        "print(json.dumps({'ticks': [[float(x), label.get_text()] for x, label in "
        "zip(ax.get_xticks(), ax.get_xticklabels())], 'offset': ax.xaxis.get_offset_text().get_text()}))"
    )))

    # matplotlib places a date at its days since 1970-01-01 (its default date epoch)
    days = [datetime(1970, 1, 1) + timedelta(days=x) for x, _ in shown["ticks"]]
    assert len(days) >= 3, shown
    assert [label for _, label in shown["ticks"]] == [day.strftime("%b %d") for day in days], shown
    assert shown["offset"] in {str(day.year) for day in days}, shown


@pytest.mark.e2e  # a night into a real PostgreSQL, then the notebook in a live kernel
def test_notebook_runs_on_postgresql_read_only(tmp_path: Path, postgres_server) -> None:
    from support.destinations import DB_PASSWORD, make_target

    target = make_target("postgres", tmp_path, postgres_server)
    with FakeCekuraApi(generate(DataSpec(projects=8, sessions_per_project=60)), api_key=API_KEY) as api:
        loaded = warm.run(
            [sys.executable, "-m", "cekura_sessions.cli", "run", "--base-url", api.url, "--db", target.db],
            env=_kernel_env(CEKURA_API_KEY=API_KEY, DLT_DATA_DIR=str(tmp_path / "dlt")), capture_output=True,
            text=True, timeout=180,
        )
    assert loaded.returncode == 0, loaded.stderr
    client = _client(nbformat.read(NOTEBOOK, as_version=4), NOTEBOOK.parent)
    with client.setup_kernel(env=_kernel_env(CEKURA_DB=target.db), cleanup_kc=True):
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index)
        written = _run_in_kernel(client, "print(query('select 1 as x').x[0]); "
                                          "import psycopg2; c = psycopg2.connect(DB); c.set_session(readonly=True)\n"
                                          "try:\n    c.cursor().execute('create table analytics.nope (x int)')\n"
                                          "except psycopg2.errors.ReadOnlySqlTransaction:\n    print('read-only')")
    assert len(_images(client.nb)) == FIGURES
    printed = "".join(o.get("text", "") for cell in _code_cells(client.nb) for o in cell.outputs)
    assert "database: postgresql://" in printed and DB_PASSWORD not in printed, printed[:300]
    assert written.split() == ["1", "read-only"], written


# --- what the figures are drawn from, computed here from the generated data ---------------------


def _live_sessions(data: FakeDataset) -> dict[int, tuple[int, dict]]:
    """session id -> (project id, session) of every session under a project not deleted upstream."""
    live = [p["id"] for p in data.projects if not p.get("is_deleted")]
    return {s["id"]: (pid, s) for pid in live for s in data.sessions.get(pid, [])}


def _json_from_kernel(client: NotebookClient, code: str) -> Any:
    return json.loads(_run_in_kernel(client, "import json\n" + code))


@pytest.mark.e2e  # the demo CLI and a night in subprocesses, and a live kernel
def test_notebook_weekly_trend_draws_each_weeks_volume_and_completion_rate(live_run: NotebookClient) -> None:
    weeks: Counter = Counter()
    completed: Counter = Counter()
    for _, session in _live_sessions(generate(SPEC).next_night(NIGHT_SEED)).values():
        day = parse_ts(session["created_at"]).astimezone(timezone.utc).date()
        monday = day - timedelta(days=day.weekday())
        weeks[monday] += 1
        completed[monday] += session["status"] == "completed"

    drawn = _json_from_kernel(live_run, (
        "print(json.dumps({'bars': [float(bar.get_height()) for bar in trend_volume_ax.patches],"
        " 'rate': [float(y) for y in trend_rate_ax.lines[0].get_ydata()],"
        " 'ticks': [label.get_text() for label in trend_volume_ax.get_xticklabels()]}))"
    ))

    order = sorted(weeks)
    assert drawn["ticks"] == [f"week of {monday:%b %d}" for monday in order], drawn
    assert drawn["bars"] == [weeks[monday] for monday in order], drawn
    assert drawn["rate"] == pytest.approx([100 * completed[m] / weeks[m] for m in order]), drawn


def _local_day(session: dict, timezone_name: str | None) -> date:
    """The day a session counts on in daily_completion_rates: its project's local date, UTC where the
    project has no time zone or one the tz database does not know."""
    try:
        zone = ZoneInfo(timezone_name) if timezone_name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        zone = timezone.utc
    return parse_ts(session["created_at"]).astimezone(zone).date()


@pytest.mark.e2e  # the demo CLI and a night in subprocesses, and a live kernel
def test_notebook_daily_figure_draws_a_days_rate_only_from_enough_sessions(live_run: NotebookClient) -> None:
    data = generate(SPEC).next_night(NIGHT_SEED)
    zones = {p["id"]: p.get("timezone") for p in data.projects}
    per_project: dict[int, list[dict]] = {}
    for pid, session in _live_sessions(data).values():
        per_project.setdefault(pid, []).append(session)
    top = sorted(per_project, key=lambda pid: (-len(per_project[pid]), pid))[:4]

    panels = _json_from_kernel(live_run, (
        "import numpy as np\n"
        "out = []\n"
        "for ax, volume in zip(daily_axes.flat, daily_volume_axes):\n"
        "    dots = np.ma.filled(np.ma.asarray(ax.collections[0].get_offsets(), dtype=float), np.nan)\n"
        "    out.append({'title': ax.get_title(),\n"
        "                'bars': [[float(bar.get_x() + bar.get_width() / 2), float(bar.get_height())]\n"
        "                         for bar in volume.patches],\n"
        "                'dots': [[float(x), float(y)] for x, y in dots if not np.isnan(y)]})\n"
        "print(json.dumps(out))"
    ))

    assert [int(panel["title"].split("(")[1].split(")")[0]) for panel in panels] == top, panels
    some_dots = some_thin_days = False
    for pid, panel in zip(top, panels):
        days: Counter = Counter()
        done: Counter = Counter()
        for session in per_project[pid]:
            day = _local_day(session, zones[pid])
            days[day] += 1
            done[day] += session["status"] == "completed"
        bars = {_day(x): height for x, height in panel["bars"] if height}
        dots = {_day(x): y for x, y in panel["dots"]}
        assert bars == dict(days), (pid, bars, days)
        want = {day: 100 * done[day] / n for day, n in days.items() if n >= MIN_DAY_SESSIONS}
        assert dots == pytest.approx(want), (pid, dots, want)
        some_dots |= bool(want)
        some_thin_days |= any(n < MIN_DAY_SESSIONS for n in days.values())
    assert some_dots and some_thin_days, "the data should hold days on both sides of MIN_DAY_SESSIONS"


def _day(x: float) -> date:
    """matplotlib's date number (days since 1970-01-01, its default epoch) as the day it falls on."""
    return (datetime(1970, 1, 1) + timedelta(days=round(x))).date()


@pytest.mark.e2e  # the demo CLI and a night in subprocesses, and a live kernel
def test_notebook_status_moves_count_each_sessions_moves_across_the_two_nights(live_run: NotebookClient) -> None:
    first, second = generate(SPEC), generate(SPEC).next_night(NIGHT_SEED)
    before, after = _live_sessions(first), _live_sessions(second)

    def status(session: dict) -> str:
        return session["status"] if session["status"] is not None else "(none)"

    want: Counter = Counter()
    for session_id, (pid, session) in before.items():
        want["(first seen)", status(session)] += 1
        if session_id not in after:
            want[status(session), "(gone upstream)"] += 1
        elif (status(after[session_id][1]), after[session_id][0]) != (status(session), pid):
            want[status(session), status(after[session_id][1])] += 1
    for session_id, (_, session) in after.items():
        if session_id not in before:
            want["(first seen)", status(session)] += 1

    drawn = _json_from_kernel(live_run, (
        "print(json.dumps({'cells': moves_ax.images[0].get_array().tolist(),"
        " 'rows': [label.get_text() for label in moves_ax.get_yticklabels()],"
        " 'columns': [label.get_text() for label in moves_ax.get_xticklabels()]}))"
    ))
    got = {(row, column): count
           for row, counts in zip(drawn["rows"], drawn["cells"])
           for column, count in zip(drawn["columns"], counts) if count}

    assert got == dict(want), (got, dict(want))
    assert sum(count for (source, _), count in want.items() if source != "(first seen)") > 0, "no session moved"


def test_notebook_reads_the_dataset_cekura_dataset_names(tmp_path: Path) -> None:
    """A second organisation's dataset (`demo --dataset team_b`): the notebook's queries, written
    on `analytics`, read `team_b_analytics` when CEKURA_DATASET says team_b."""
    spec = DataSpec(projects=3, sessions_per_project=20, as_of=AS_OF)
    db = tmp_path / "two.duckdb"
    made = warm.run(
        [sys.executable, "-m", "cekura_sessions.cli", "demo", "--db", str(db), "--dataset", "team_b", "--projects",
         str(spec.projects), "--sessions-per-project", str(spec.sessions_per_project), "--as-of", AS_OF.isoformat()],
        cwd=tmp_path, env=_kernel_env(), capture_output=True, text=True, timeout=180,
    )
    assert made.returncode == 0, made.stderr
    data = generate(spec)
    want = sum(len(data.sessions[p["id"]]) for p in data.projects if not p.get("is_deleted"))
    setup = [cell for cell in _code_cells(nbformat.read(NOTEBOOK, as_version=4))[:2]]  # imports, then query()
    client = _client(nbformat.v4.new_notebook(cells=setup), NOTEBOOK.parent)
    with client.setup_kernel(env=_kernel_env(CEKURA_DB=str(db), CEKURA_DATASET="team_b"), cleanup_kc=True):
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index)
        got = _run_in_kernel(client, "print(int(query('select count(*) from analytics.sessions').iloc[0, 0]))")
    assert int(got) == want, (got, want)


def test_notebook_on_a_dataset_the_database_does_not_hold_names_those_it_holds(demo_db: Path) -> None:
    """CEKURA_DATASET mistyped: the notebook says which datasets the database holds, not that
    `analytics.sessions` (full, in the default dataset) holds no sessions. The module's demo
    database (read only, as the notebook opens it)."""
    db = demo_db
    setup = _code_cells(nbformat.read(NOTEBOOK, as_version=4))[:3]  # imports, query(), the data or NO_DATA
    client = _client(nbformat.v4.new_notebook(cells=setup), NOTEBOOK.parent)
    with client.setup_kernel(env=_kernel_env(CEKURA_DB=str(db), CEKURA_DATASET="team_z"), cleanup_kc=True):
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index)
        said = _run_in_kernel(client, "print(HAS_DATA, NO_DATA)").strip()
    assert said == (f"False no data yet: {db.resolve()} holds no dataset team_z (CEKURA_DATASET); it holds cekura_raw: "
                    "set CEKURA_DATASET to one of them, then run this notebook again"), said
