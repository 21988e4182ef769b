"""The commands that work on what is already loaded: `models`, `check`, `status`.

Each opens the destination through destination/database.py (a DuckDB file or a PostgreSQL database), so
a file another process holds is waited for (--db-wait) and then reported in one line (exit 3),
never as the engine's own error.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from cekura_sessions import logs, settings
from cekura_sessions.destination.address import DestinationError, parse_destination
from cekura_sessions.destination.database import Database, DatabaseBusy, DatabaseUnavailable
from cekura_sessions.destination.dataset import Dataset
from cekura_sessions.destination.warehouse import LockTimeout, SettingError, Warehouse, WarehouseError
from cekura_sessions.exit_codes import EXIT_FAILED, EXIT_FATAL, EXIT_LOCKED, EXIT_OK, STATUS_EXIT_CODES
from cekura_sessions.models import checks, runner
from cekura_sessions.models.check_sql import all_checks
from cekura_sessions.run import details_state
from cekura_sessions.run import status as status_reads


def rebuild_models(db: str, db_wait: float, drop_dependents: bool = False, dataset: str = settings.RAW_SCHEMA) -> int:
    """Exit 0 built, 1 objects of others depend on a model that must be replaced (PostgreSQL;
    `drop_dependents` drops them), 2 no database or the build failed (the previous models stay),
    3 file held (or a PostgreSQL lock past `db_wait`). `db`: a DuckDB file path or a postgresql:// URL;
    `dataset`: whose models (--dataset)."""
    database = _database(db, db_wait, dataset)
    if database is None:
        return EXIT_FATAL
    started = time.monotonic()
    try:
        with database.connect() as con:
            missing = _no_such_dataset(con, database)
            if missing:
                return _fail(missing)
            rows = runner.build_models(con, drop_dependents=drop_dependents)
    except (DatabaseBusy, LockTimeout) as error:
        return _fail(str(error), EXIT_LOCKED)
    except (DatabaseUnavailable, SettingError) as error:
        return _fail(str(error))
    except runner.DependentsError as error:
        return _fail(str(error), EXIT_FAILED)
    except runner.ModelBuildError as error:
        return _fail(f"{error}; the previous models are unchanged")
    logs.write("\n".join(f"{name:<32} {count:>10} rows" for name, count in rows.items()))
    logs.say(f"built {len(rows)} models in {time.monotonic() - started:.2f} s", models=len(rows))
    return EXIT_OK


def check(db: str, db_wait: float, show: int = 0, dataset: str = settings.RAW_SCHEMA) -> int:
    """Exit 0 every error-severity check passed, 1 one failed, 2 cannot run, 3 file held.
    `show` > 0 prints up to that many offending rows of each check that did not pass."""
    database = _database(db, db_wait, dataset)
    if database is None:
        return EXIT_FATAL
    try:
        with database.connect(read_only=True) as con:
            missing = _no_such_dataset(con, database)
            if missing:
                return _fail(missing)
            if not _models_built(con):
                named = "" if database.dataset.is_default else f" --dataset {database.dataset.name}"
                return _fail(f"{database} has no models yet in {database.dataset.analytics}; build them with "
                             f"`cekura-sessions models --db {database}{named}`")
            results = checks.run_checks(con)
            _print_checks(results)
            if show:
                _print_offending_rows(con, [r for r in results if not r.passed], show)
    except DatabaseBusy as error:
        return _fail(str(error), EXIT_LOCKED)
    except DatabaseUnavailable as error:
        return _fail(str(error))
    except checks.CheckError as error:
        return _fail(f"a check could not run: {error}")
    failed = [r.name for r in results if not r.passed and r.severity == "error"]
    if failed:
        return _fail(f"{len(failed)} check(s) failed: {', '.join(failed)}", EXIT_FAILED)
    return EXIT_OK


def status(db: str, db_wait: float, max_age_hours: float, recent_runs: int, all_projects: bool = False,
           dataset: str = settings.RAW_SCHEMA) -> int:
    """Prints recent runs, project freshness (the stalest few, or `all_projects`) and row counts,
    then one verdict line; exits with the verdict's code (exit_codes.py). `dataset`: whose runs and
    data (--dataset)."""
    codes = STATUS_EXIT_CODES
    try:
        database = Database(parse_destination(db), db_wait, Dataset(dataset))
    except (DestinationError, DatabaseUnavailable) as error:
        return _fail(str(error), codes["error"])
    if database.is_file and not database.path.exists():
        return _fail(f"missing: {database} does not exist; run `cekura-sessions run` first (or pass --db)",
                     codes["missing"])
    try:
        running = database.running_night()
        if running is not None:  # the ledger's unfinished row is that night's: it is not dead
            return _fail(f"locked: a night is running on {database}: {running}", codes["locked"])
        with database.connect(read_only=True) as con:
            missing = _no_such_dataset(con, database)
            if missing:
                return _fail(f"missing: {missing}", codes["missing"])
            runs = status_reads.recent_runs(con, recent_runs)
            freshness = status_reads.project_freshness(con)
            gone = status_reads.projects_gone(con)
            counts = status_reads.row_counts(con)
            awaiting = details_state.awaiting_count(con)
            loaded_at = status_reads.newest_loaded(con)
            last = status_reads.newest_finished(con)
            unfinished = status_reads.newest_unfinished(con)
    except DatabaseBusy as error:
        return _fail(f"locked: {error}", codes["locked"])
    except (DatabaseUnavailable, WarehouseError) as error:
        return _fail(f"cannot read {database}: {logs.one_line(error, first_only=True)}", codes["error"])
    if recent_runs:
        _print_runs(runs)
    _print_freshness(freshness, gone, None if all_projects else FRESHNESS_SHOWN, database.dataset)
    logs.write("rows: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    if awaiting is not None:
        logs.write(f"details: {awaiting} session(s) await their detail (read on the next nights, newest first)")
    now = datetime.now(timezone.utc)
    state = status_reads.verdict(loaded_at, last, timedelta(hours=max_age_hours), now, unfinished)
    line = _verdict_line(state, loaded_at, last, max_age_hours, now, unfinished)
    if state == "ok":
        logs.say(line, state=state)
    else:
        logs.say(line, level="error", state=state, exit_code=codes[state])
    return codes[state]


def _verdict_line(state: str, loaded_at: datetime | None, last: status_reads.FinishedRun | None,
                  max_age_hours: float, now: datetime, unfinished: tuple[str, datetime] | None = None) -> str:
    def hours(when: datetime) -> str:
        return f"{(now - when).total_seconds() / 3600:.1f} h"

    if state == "unfinished" and unfinished is not None:
        run_id, started_at = unfinished
        return (f"unfinished: the newest run, {run_id}, started {hours(started_at)} ago and never finished (killed "
                f"or crashed; no run is going now); the next run completes or discards what it left")

    if state == "stale":
        if loaded_at is None:
            return "stale: no run has succeeded yet; run `cekura-sessions run` and see its last line"
        return (f"stale: the newest run that loaded data finished {hours(loaded_at)} ago "
                f"(limit {max_age_hours:g} h, --max-age-hours)")
    assert last is not None  # ok, partial and failed are about a finished run
    if state == "ok":
        return f"ok: the newest run, {last.run_id}, succeeded {hours(last.finished_at)} ago"
    why = f": {last.error}" if last.error else ""
    if state == "partial":
        return f"partial: the newest run, {last.run_id}, {hours(last.finished_at)} ago, ended partial (exit 1){why}"
    return (f"failed: the newest run, {last.run_id}, {hours(last.finished_at)} ago, loaded nothing "
            f"(exit {last.exit_code}){why}; the data is from {hours(loaded_at)} ago")


def _print_runs(runs: list[tuple]) -> None:
    lines = [f"{'run':<17} {'started (UTC)':<20} {'took':>7} {'status':<10} {'exit':>4} {'ok':>5} {'failed':>6} "
             f"{'listed':>8} {'written':>8} {'requests':>8} {'retries':>7}"]
    for run_id, started, finished, status, exit_code, ok, failed, listed, written, requests, retries, error in runs:
        took = f"{(finished - started).total_seconds():.1f}s" if finished else "-"
        shown_status = status if finished else "unfinished"
        lines.append(
            f"{run_id:<17} {started.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} {took:>7} {shown_status:<10} "
            f"{_dash(exit_code):>4} {_dash(ok):>5} {_dash(failed):>6} {_dash(listed):>8} {_dash(written):>8} "
            f"{_dash(requests):>8} {_dash(retries):>7}"
        )
        if error:
            lines.append(f"{'':<17} {error}")
    if len(lines) == 1:
        lines.append("no run recorded yet")
    logs.write("\n".join(lines))


FRESHNESS_SHOWN = 5  # the stalest projects `status` lists; `--all` lists every one


def _print_freshness(freshness: list[tuple], gone: list[int], shown: int | None, dataset: Dataset) -> None:
    """The listed projects, stalest first (the first `shown`, None: all), then how many more there
    are and the projects kept in raw that left analytics (deleted or no longer listed upstream),
    named as `dataset` calls those schemas."""
    live = [row for row in freshness if row[4]]
    lines = []
    if live:
        lines.append(f"{len(live)} listed project(s) loaded; stalest first:")
    elif not gone:
        lines.append("no project has been loaded yet")
    now = datetime.now(timezone.utc)
    for project_id, name, listed_at, sessions, _ in live[:shown]:
        age_hours = (now - listed_at).total_seconds() / 3600
        lines.append(f"  project {project_id:<8} {(name or '?')[:30]:<30} last loaded "
                     f"{listed_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({age_hours:.1f} h ago), "
                     f"{sessions} sessions")
    hidden = len(live) - len(live[:shown])
    if hidden:
        lines.append(f"  ... and {hidden} more (`cekura-sessions status --all` lists every one)")
    if gone:
        ids = ", ".join(map(str, gone[:10])) + (", ..." if len(gone) > 10 else "")
        lines.append(f"{len(gone)} project(s) deleted or no longer listed upstream (id {ids}): kept in "
                     f"{dataset.raw}, left out of {dataset.analytics}")
    logs.write("\n".join(lines))


def _print_checks(results: list[checks.CheckResult]) -> None:
    width = max([len(r.name) for r in results] + [5])
    lines = [f"{'check':<{width}} {'severity':<8} {'offending rows':>14}  result"]
    for result in results:
        verdict = "ok" if result.passed else ("FAIL" if result.severity == "error" else "warn")
        lines.append(f"{result.name:<{width}} {result.severity:<8} {result.offending_rows:>14}  {verdict}")
    logs.write("\n".join(lines))


def _print_offending_rows(con: Warehouse, failed: list[checks.CheckResult], limit: int) -> None:
    """Each named check's own SELECT of offending rows, its first `limit` rows, every column
    (DuckDB's own drawing hides columns past the width, often the one that broke the rule)."""
    queries = {c.name: c.query for c in all_checks()}
    for check in failed:
        # the newline keeps a trailing line comment from swallowing the closing parenthesis
        result = con.execute(f"select * from (\n{con.select_sql(queries[check.name])}\n) as offending limit {int(limit)}")
        columns = [column[0] for column in result.description]
        rows = [[_cell(value) for value in row] for row in result.fetchall()]
        widths = [max(len(text) for text in column) for column in zip(columns, *rows)]
        lines = [f"{check.name}: {len(rows)} of {check.offending_rows} offending row(s)"]
        lines += ["  " + "  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip()
                  for row in [columns, *rows]]
        logs.write("\n".join(lines))


def _cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _no_such_dataset(con: Warehouse, database: Database) -> str | None:
    """One line when `database` holds datasets but not the one asked for (a mistyped --dataset or
    CEKURA_DATASET), naming those it holds; None when it is there or the database holds none yet."""
    if con.has_table(settings.RAW_SCHEMA, settings.RUNS_TABLE):
        return None
    present = status_reads.datasets(con)
    if not present:
        return None
    return (f"{database} has no dataset {con.dataset.name} (no run loaded it); it holds "
            f"{', '.join(present)}: pass one of them with --dataset (or CEKURA_DATASET)")


def _models_built(con: Warehouse) -> bool:
    return con.execute("select count(*) from information_schema.tables where table_schema = ?",
                       [con.dataset.analytics]).fetchone()[0] > 0


def _database(db: str, db_wait: float, dataset: str) -> Database | None:
    """The destination `db` names, or None (after one line) when it names none or no file is there."""
    try:
        database = Database(parse_destination(db), db_wait, Dataset(dataset))
    except (DestinationError, DatabaseUnavailable) as error:
        _fail(str(error))
        return None
    if database.is_file and not database.path.exists():
        _fail(f"{database} does not exist; run `cekura-sessions run` first (or pass --db)")
        return None
    return database


def _fail(message: str, code: int = EXIT_FATAL) -> int:
    logs.say(message, level="error", exit_code=code)
    return code


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
