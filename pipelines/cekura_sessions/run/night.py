"""One nightly run: lock, leftover packages, extract -> normalize -> load, status history,
models, checks, run ledger, exit code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from dlt.common.pipeline import LoadInfo

from cekura_sessions import logs, settings, test_hooks
from cekura_sessions.api.retry import RetryPolicy
from cekura_sessions.destination.address import Destination, DestinationError, parse_destination, password_of
from cekura_sessions.destination.database import (
    Database,
    DatabaseBusy,
    DatabaseUnavailable,
    LockLost,
)
from cekura_sessions.destination.dataset import Dataset, DatasetNameError
from cekura_sessions.destination.lock import LockHeld, LockUnavailable
from cekura_sessions.destination.warehouse import LockTimeout, SettingError, Warehouse, WarehouseError, setting_error_in
from cekura_sessions.exit_codes import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL
from cekura_sessions.extract.report import RunReport
from cekura_sessions.extract.source import cekura
from cekura_sessions.models import checks, runner
from cekura_sessions.run import bookkeeping, details_night, dlt_folder, interrupt, stored, throttle_memory
from cekura_sessions.run.dlt_pipeline import (
    bind_to_database,
    database_id,
    drop_repeated_rows,
    finish_leftover_packages,
    load_waiting,
    make_pipeline,
    prune_loaded_packages,
)
from cekura_sessions.run.interrupt import Interrupted
from cekura_sessions.run.outcome import (
    FatalError,
    RunOutcome,
    fatal_message,
    problems,
    storage_full,
)

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True)
class RunConfig:
    db: Path | str | Destination  # a DuckDB file, or a postgresql:// URL (destination/address.py)
    dataset: str = settings.RAW_SCHEMA  # --dataset: the schemas this run loads and builds in (destination/dataset.py)
    api_key: str | None = field(default=None, repr=False)  # None: dlt resolves it ([sources.cekura] api_key)
    api_key_origin: str | None = None  # where the key came from, for the hint when the API refuses it
    base_url: str | None = None  # None: dlt config, else the default
    project_ids: list[int] | None = None
    build_models: bool = True
    concurrency: int | None = None  # None: dlt config, else settings.DEFAULT_CONCURRENCY
    db_wait_seconds: float = 30.0
    pipelines_dir: str | None = None  # None: `<db>.dlt/` beside the database, its own (run/dlt_pipeline.py)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    page_size: int | None = None  # rows asked for per page; None: dlt config, else endpoints.DEFAULT_PAGE_SIZE
    # sessions' details (run/details_night.py); None: [sources.cekura] details, details_budget,
    # conversation_text, else read them, within the default budget, without their text
    details: bool | None = None
    details_budget: int | None = None
    conversation_text: bool | None = None
    accept_removals: bool = False  # apply removals the guard would hold (extract/removals.py)
    # PostgreSQL: replace a model whose columns changed even when views of others depend on it
    # (they are dropped); without it such a build stops, naming them (models/postgres_models.py)
    drop_dependents: bool = False


def run(config: RunConfig, report: RunReport | None = None) -> RunOutcome:
    """One run; pass `report` to watch its progress from another thread."""
    report = report or RunReport()
    logs.register_secret(config.api_key)
    try:
        database = _database(config)
        database.check_writable()
        with database.run_lock(report.run_id):
            try:
                return _locked_run(config, database, report)
            finally:
                database.let_go()
    except Interrupted as stop:
        interrupt.claim_finish()
        return RunOutcome(stop.exit_code, report, str(stop))
    except LockHeld as error:
        return RunOutcome(EXIT_LOCKED, report, f"{error}; nothing was touched")
    except (DatabaseBusy, LockTimeout) as error:
        return RunOutcome(EXIT_LOCKED, report, str(error))
    except (FatalError, LockUnavailable, DatabaseUnavailable, DestinationError, SettingError,
            DatasetNameError) as error:
        return RunOutcome(EXIT_FATAL, report, str(error))


def _database(config: RunConfig) -> Database:
    """The destination `config.db` names; a URL's password is kept from every log line."""
    destination = config.db if isinstance(config.db, Destination) else parse_destination(str(config.db))
    if destination.url:
        logs.register_secret(password_of(destination.url))
    return Database(destination, config.db_wait_seconds, Dataset(config.dataset))


def run_stoppable(config: RunConfig, report: RunReport, announce: Callable[[str, int], None]) -> RunOutcome:
    """run(), where SIGINT and SIGTERM stop the night in order (run/interrupt.py): the outcome's
    exit code is then 130 or 143 and the ledger says `interrupted`. Call it from the main thread;
    the caller exits with interrupt.exit_now() after an interruption, since a fetch thread may
    still wait on an answer. When the run cannot unwind in time, the process records the
    interruption, calls `announce(the one line, the exit code)` and exits from wherever it stands."""

    def give_up(stop: Interrupted) -> None:
        record_interrupted(config, report, stop)
        announce(str(stop), stop.exit_code)

    try:
        with interrupt.stop_on_signals(give_up):
            return run(config, report)
    except Interrupted as stop:  # it came as the run returned: the ledger has the run as it ended
        return RunOutcome(stop.exit_code, report, str(stop))


def _locked_run(config: RunConfig, database: Database, report: RunReport) -> RunOutcome:
    try:
        database.keep_open()  # until the extract: the ledger, the leftovers, what is stored
        with database.connect() as con:
            bookkeeping.record_start(con, report)
            database_key = database_id(con)
    except (WarehouseError, duckdb.Error, OSError) as error:
        # no ledger row: the line says so, since `status` cannot
        why = storage_full(error) or f"{type(error).__name__}: {logs.one_line(error, first_only=True)}"
        raise FatalError(f"nothing done: the run could not write its row in the ledger ({why})") from None
    outcome = RunOutcome(EXIT_FATAL, report)
    fatal: FatalError | None = None  # the failure on its way out, if it is one
    try:
        outcome = _night(config, database, database_key, report)
    except Interrupted as stop:
        interrupt.claim_finish()
        outcome.exit_code, outcome.message = stop.exit_code, str(stop)
        raise
    except (FatalError, DatabaseBusy, DatabaseUnavailable, SettingError) as error:
        # a PostgreSQL setting or privilege (SettingError) is named in its one line, never "unexpected"
        outcome.message = str(error)
        if isinstance(error, (LockTimeout, DatabaseBusy)):
            outcome.exit_code = EXIT_LOCKED
        fatal = error if isinstance(error, FatalError) else None
        raise
    except Exception as error:
        # a bug or an environment problem: one line for people, the traceback for --log-level DEBUG
        log.debug("run %s failed", report.run_id, exc_info=True)
        outcome.message = storage_full(error) or (
            f"unexpected {type(error).__name__}: {logs.one_line(error, first_only=True)} "
            "(rerun with --log-level DEBUG for details)")
        fatal = FatalError(outcome.message)
        raise fatal from None
    finally:
        if not _record_finish(database, outcome) and fatal is not None:
            # the line must say that the ledger has no end for this run either
            raise FatalError(outcome.message) from None  # noqa: B012 - replaces the failure with its fuller line
    return outcome


def _night(config: RunConfig, database: Database, database_key: str, report: RunReport) -> RunOutcome:
    try:
        _load(config, database, database_key, report)
        _details(config, database, report)
        outcome = _after_load(config, database, report)
    except BaseException:
        # after a signal, whatever failed failed because of it (DuckDB turns the handler's
        # exception into `RuntimeError: Query interrupted`; dlt wraps what it sees)
        interrupt.raise_if_received()
        raise
    interrupt.raise_if_received()  # a signal some code caught and carried on from
    return outcome


def _load(config: RunConfig, database: Database, database_key: str, report: RunReport) -> LoadInfo:
    # before dlt opens the folder: a damaged state or schema file is set aside and rebuilt
    folder = Path(config.pipelines_dir or database.pipelines_dir())
    dlt_folder.set_aside_damaged(folder / database.dataset.pipeline_name)
    pipeline = make_pipeline(database, config.pipelines_dir)
    bind_to_database(pipeline, str(database), database_key)
    leftovers_completed = finish_leftover_packages(pipeline, database)
    try:
        with database.connect() as con:
            if leftovers_completed:
                drop_repeated_rows(con)
            night = stored.read_night_state(con, database)
        # the file is not held while the night waits on the network: a notebook or the DuckDB
        # shell can open it until the load
        database.let_go()
        source = cekura(**_source_overrides(config), retry=config.retry, report=report, night=night)
        pipeline.extract(source, loader_file_format="parquet")
        # Arrow's allocator keeps what the extract freed; hand it back before DuckDB's load
        # (peak RSS at M 430 MB -> 340 MB)
        pa.default_memory_pool().release_unused()
        _checkpoint("normalize", database)
        pipeline.normalize()
        _checkpoint("load", database)
        database.keep_open()  # from the load to the ledger's end, but for the details' requests
        info = load_waiting(pipeline, database)
        prune_loaded_packages(pipeline)
        return info
    except (FatalError, DatabaseBusy, DatabaseUnavailable):
        raise
    except Exception as error:  # dlt wraps every step's failure; find what really happened
        busy = _cause(error, DatabaseBusy)  # dlt's own open waited for a reader past --db-wait
        if busy is not None:
            raise busy from None
        setting = setting_error_in(error)  # PostgreSQL's statement_timeout, lock_timeout, a privilege
        if setting is not None:
            raise setting from None
        raise FatalError(fatal_message(error, config.base_url, config.api_key_origin)) from None


def _cause(error: BaseException, kind: type[E]) -> E | None:
    """The first exception of `kind` in `error`'s chain (dlt wraps what its steps raise)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _details(config: RunConfig, database: Database, report: RunReport) -> None:
    """The sessions' details, once the listings are loaded (run/details_night.py); skipped when
    no listing loaded (the night is then fatal anyway)."""
    if report.projects_failed and not report.projects_ok:
        return
    wanted = details_night.resolve(config.details, config.details_budget, config.conversation_text)
    _checkpoint("details", database)
    try:
        details_night.read_details(database, config.pipelines_dir, report, wanted, config.retry, config.concurrency)
    except (FatalError, DatabaseBusy, DatabaseUnavailable):
        raise
    except Exception as error:  # dlt wraps every step's failure; find what really happened
        setting = setting_error_in(error)
        if setting is not None:
            raise setting from None
        raise FatalError(fatal_message(error, config.base_url, config.api_key_origin)) from None


def _after_load(config: RunConfig, database: Database, report: RunReport) -> RunOutcome:
    outcome = RunOutcome(EXIT_OK, report)
    if report.projects_failed and not report.projects_ok:
        raise FatalError(f"no project could be loaded: {report.failed_summary()}")
    database.confirm_lock("history")
    with database.connect() as con:
        bookkeeping.mark_listed(con, report)
        bookkeeping.record_changes(con, report)
        _checkpoint("models", database)
        if config.build_models:
            try:
                _models_and_checks(con, outcome, config.drop_dependents)
            except runner.ModelBuildError as error:
                outcome.exit_code, outcome.message = EXIT_PARTIAL, str(error)
                return outcome
    # not rewritten with Dataset.sql: the lines hold the API's URL and its answers (a `staging` host)
    found = problems(report, outcome.checks, database.dataset.raw) + details_night.problems(report)
    if found:
        outcome.exit_code, outcome.message = EXIT_PARTIAL, "; ".join(found)
    return outcome


def _models_and_checks(con: Warehouse, outcome: RunOutcome, drop_dependents: bool = False) -> None:
    """Rebuild the models and run the checks, unless neither the raw data they read nor the
    SQL changed since the last build: a quiet night then costs a fingerprint, and the checks'
    answer is the one they gave on these same inputs."""
    fingerprint = runner.inputs_fingerprint(con)
    if runner.up_to_date(con, fingerprint):
        log.info("models are up to date: no raw data or SQL changed since they were built")
        recorded = checks.recorded_checks(con, fingerprint)
        if recorded is not None:
            outcome.checks = recorded
            return
    else:
        outcome.model_rows = runner.build_models(con, fingerprint=fingerprint, drop_dependents=drop_dependents)
    outcome.checks = checks.run_checks(con)
    checks.record_checks(con, fingerprint, outcome.checks)


def record_interrupted(config: RunConfig, report: RunReport, stop: Interrupted) -> None:
    """The ledger row of a run a signal stopped, written from wherever the run stands
    (run/interrupt.py's watchdog, when the run could not unwind in time)."""
    _record_finish(_database(config), RunOutcome(stop.exit_code, report, str(stop)))


def _record_finish(database: Database, outcome: RunOutcome) -> bool:
    """Write the outcome on the run's ledger row; False (and the outcome made fatal, its line
    saying so) when the ledger could not take it."""
    status = {EXIT_OK: "succeeded", EXIT_PARTIAL: "partial"}.get(outcome.exit_code, "failed")
    if outcome.exit_code in EXIT_INTERRUPTED:
        status = "interrupted"
    if database.lost_lock:
        return True  # another run holds the lock now: this one writes nothing more, its row stays unfinished
    try:
        database.confirm_lock("ledger")
        with database.connect() as con:
            bookkeeping.record_finish(con, outcome.report, status, outcome.exit_code, outcome.message or None)
            _remember_throttle(con, outcome.report)
    except LockLost as error:
        log.error("%s", error)
    except (DatabaseBusy, DatabaseUnavailable, WarehouseError, duckdb.Error, OSError) as error:
        log.error("could not record the run's end in the ledger: %s", error)
        # the exit code and the mailed line must agree with the ledger, which says the run never
        # finished: a night that cannot record its end is not a good night
        if outcome.exit_code not in EXIT_INTERRUPTED:
            outcome.exit_code = EXIT_FATAL
            why = "the disk is full" if storage_full(error) else logs.one_line(error, first_only=True)
            outcome.message = "; ".join(filter(None, [outcome.message, f"the ledger could not record the run's end ({why})"]))
        return False
    return True


def _remember_throttle(con: Any, report: RunReport) -> None:
    """What this night learned of the API's throttle, for the next night to pace from (kept
    whatever the night's outcome: a night the budget ended learned it too)."""
    throttle = report.throttle_learned
    if throttle is not None and report.base_url:
        throttle_memory.record(con, report.base_url, throttle)


# the stages that write to the database next: the run lock is confirmed before each (issue 20)
_WRITING_STAGES = frozenset({"load", "details", "models"})


def _checkpoint(stage: str, database: Database) -> None:
    test_hooks.reach(stage)
    if stage in _WRITING_STAGES:
        database.confirm_lock(stage)


def _source_overrides(config: RunConfig) -> dict[str, Any]:
    """What the command line or the CEKURA_* aliases set; the rest dlt resolves from its own
    config ([sources.cekura] in .dlt/, SOURCES__CEKURA__* variables) or the defaults."""
    given = {
        "api_key": config.api_key,
        "base_url": config.base_url,
        "project_ids": config.project_ids,
        "concurrency": config.concurrency,
        "page_size": config.page_size,
        "accept_removals": config.accept_removals or None,  # False: dlt config may still say true
    }
    return {name: value for name, value in given.items() if value is not None}


