"""`cekura-sessions demo`: the whole nightly job against the bundled fake API on loopback."""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from cekura_sessions import logs, settings
from cekura_sessions.destination.database import DatabaseBusy, DatabaseUnavailable, check_file_name, connect
from cekura_sessions.destination.dataset import Dataset
from cekura_sessions.exit_codes import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_LOCKED
from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi
from cekura_sessions.run.interrupt import exit_now
from cekura_sessions.run.night import RunConfig, run_stoppable

DEMO_KEY = "demo-key"


def run_demo(db_path: Path, projects: int, sessions_per_project: int, seed: int, as_of: date,
             db_wait: float = 30.0, dataset_name: str = settings.RAW_SCHEMA) -> int:
    """`as_of`: the day the generated data is as of (today, unless asked otherwise): its sessions
    were created over the 30 days before it. `dataset_name`: the dataset loaded (--dataset)."""
    names = Dataset(dataset_name)
    try:
        check_file_name(db_path.resolve(), names)  # before the file is made and marked as the demo's
        refusal = _not_the_demos(db_path, db_wait, names)
    except (DatabaseBusy, DatabaseUnavailable) as error:  # as the run itself would say it
        logs.write(f"exit {EXIT_LOCKED if isinstance(error, DatabaseBusy) else EXIT_FATAL}: {error}")
        return EXIT_LOCKED if isinstance(error, DatabaseBusy) else EXIT_FATAL
    if refusal:
        logs.say(f"demo: {refusal}", level="error", exit_code=EXIT_FATAL)
        return EXIT_FATAL
    dataset = generate(DataSpec(projects=projects, sessions_per_project=sessions_per_project, seed=seed, as_of=as_of))
    started = time.monotonic()
    with FakeCekuraApi(dataset, api_key=DEMO_KEY) as api:
        # its dlt state goes beside the file, demo.duckdb.dlt/, like every database's
        config = RunConfig(db=db_path, dataset=names.name, api_key=DEMO_KEY, base_url=api.url, db_wait_seconds=db_wait)
        outcome = run_stoppable(config, RunReport(), announce=_say_interrupted)
    if outcome.exit_code in EXIT_INTERRUPTED:
        _say_interrupted(outcome.message, outcome.exit_code)
        exit_now(outcome.exit_code)
    seconds = time.monotonic() - started
    report = outcome.report
    logs.write(f"demo: fake Cekura API with {len(dataset.projects)} projects, sessions created "
               f"{dataset.spec.epoch:%Y-%m-%d} .. {dataset.as_of - timedelta(days=2):%Y-%m-%d} -> {db_path}")
    # sessions_written counts only what changed: on a second demo it is 0 above a full table
    read = (f"{len(report.projects_ok)} projects read in {seconds:.1f} s ({report.stats.requests} requests): "
            f"{report.sessions_written:,} new or changed sessions")
    if outcome.exit_code != 0:
        logs.write(read)
        logs.write(f"exit {outcome.exit_code}: {outcome.message}")
        return outcome.exit_code
    rows, stored, gone = _summary(db_path, names)
    logs.write(f"{read}; {stored:,} stored")
    _print_completion(rows, gone, names)
    logs.write(
        f"query it: {_python()} -c \"import duckdb; print(duckdb.connect('{db_path}', read_only=True)"
        f".sql('select * from {names.analytics}.sessions limit 5'))\""
    )
    return 0


_DEMO_MARK = f"{settings.META_SCHEMA}.made_by_demo"  # one row: this file is the demo's


def _not_the_demos(db_path: Path, db_wait: float, names: Dataset) -> str | None:
    """Why the demo must not write into `db_path` (None: it may). The demo replaces what the
    file's analytics hold with generated data, so it writes only into a new file, an empty one,
    or one it made (marked in the file; a `demo.duckdb` from before the mark counts as its own).
    A new or empty file is marked now, before the run, so an interrupted demo is still its own."""
    if db_path.exists():
        with connect(db_path, db_wait) as con:
            tables = {(schema, name) for schema, name in con.execute(
                "select table_schema, table_name from information_schema.tables").fetchall()}
            if (names.meta, "made_by_demo") in tables or (settings.META_SCHEMA, "made_by_demo") in tables:
                return None
            if tables and db_path.name != settings.DEMO_DB:
                return (f"{db_path} holds data the demo did not make (a nightly database?); the demo replaces a "
                        f"database's analytics with generated data, so it writes only into its own file: pass "
                        f"--db {settings.DEMO_DB} or a new path")
            if tables:
                return None  # a demo.duckdb from before the mark
    with connect(db_path, db_wait) as con:
        con.execute(names.sql(f"create schema if not exists {settings.META_SCHEMA}"))
        con.execute(names.sql(f"create table if not exists {_DEMO_MARK} as select now() as made_at"))
    return None


def _say_interrupted(line: str, code: int) -> None:
    print(f"demo: {line}", file=sys.stderr)


def _summary(db_path: Path, names: Dataset) -> tuple[list[tuple], int, list[tuple[int, str]]]:
    """The completion table's rows, the sessions stored in the raw table, and the projects kept in
    raw but left out of analytics: (id, why) for each deleted or no longer listed upstream. `names`:
    the dataset's schemas."""
    raw = contract.RAW_SCHEMA  # the default dataset's name: each query is put onto `names`'s
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute(names.sql(
            f"""
            select project_id, coalesce(project_name, '?'), sessions_total, sessions_completed, completion_rate
            from {settings.ANALYTICS_SCHEMA}.project_completion_rates
            order by project_id
            """
        )).fetchall()
        stored = con.execute(names.sql(f"select count(*) from {raw}.{contract.SESSIONS_TABLE}")).fetchone()[0]
        gone = con.execute(names.sql(
            f"""
            select p.id, case when p.is_deleted then 'deleted' else 'no longer listed' end
            from {raw}.{contract.PROJECTS_TABLE} as p
            where not {contract.project_is_live("p")}
            order by id
            """
        )).fetchall()
    return rows, stored, gone


NAME_WIDTH = 40  # a longer name keeps its head and its tail (where "Agent 3" tells it apart)


def _print_completion(rows: list[tuple], gone: list[tuple[int, str]], names: Dataset) -> None:
    width = max([4, *(len(name) for _, name, *_ in rows)])
    width = min(width, NAME_WIDTH)
    lines = [f"{'project':>8}  {'name':<{width}} {'sessions':>8} {'completed':>9} {'rate':>6}"]
    for project_id, name, total, completed, rate in rows:
        shown = "-" if rate is None else f"{rate:.0%}"
        lines.append(f"{project_id:>8}  {_fit(name, width):<{width}} {total:>8} {completed:>9} {shown:>6}")
    for why in ("deleted", "no longer listed"):
        ids = [project_id for project_id, reason in gone if reason == why]
        if ids:
            lines.append(f"{_projects(len(ids))} {why} upstream (id {', '.join(map(str, ids))}) "
                         f"{'is' if len(ids) == 1 else 'are'} kept in {names.raw}, left out of {names.analytics}")
    logs.write("\n".join(lines))


def _fit(name: str, width: int) -> str:
    """`name` in `width` characters: cut in the middle, so both its start and its end show."""
    if len(name) <= width:
        return name
    tail = width // 3
    return f"{name[:width - tail - 1]}…{name[-tail:]}"


def _projects(count: int) -> str:
    return f"{count} project" if count == 1 else f"{count} projects"


def _python() -> str:
    """How to call this interpreter: `.venv/bin/python` in a checkout, its full path elsewhere
    (an installed wheel), so the printed command runs as pasted."""
    path = Path(sys.executable)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
