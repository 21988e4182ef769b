"""One nightly run: lock, leftover packages, extract -> normalize -> load, status history,
models, checks, run ledger, exit code."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from dlt.common.pipeline import LoadInfo

from cekura_sessions import crash_points, logs
from cekura_sessions.api.retry import RetryPolicy
from cekura_sessions.extract.report import RunReport
from cekura_sessions.extract.source import cekura
from cekura_sessions.models import checks, runner
from cekura_sessions.run import history, ledger, listed, stored
from cekura_sessions.run.database import (
    DatabaseBusy,
    DatabaseUnavailable,
    connect,
    first_line,
)
from cekura_sessions.run.dlt_pipeline import (
    drop_repeated_rows,
    finish_leftover_packages,
    make_pipeline,
)
from cekura_sessions.run.lock import LockHeld, LockUnavailable, run_lock
from cekura_sessions.run.outcome import (
    EXIT_FATAL,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PARTIAL,
    FatalError,
    RunOutcome,
    fatal_message,
    problems,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    db_path: Path
    api_key: str | None = field(default=None, repr=False)  # None: dlt resolves it ([sources.cekura] api_key)
    api_key_origin: str | None = None  # where the key came from, for the hint when the API refuses it
    base_url: str | None = None  # None: dlt config, else the default
    project_ids: list[int] | None = None
    build_models: bool = True
    concurrency: int | None = None  # None: dlt config, else settings.DEFAULT_CONCURRENCY
    db_wait_seconds: float = 30.0
    pipelines_dir: str | None = None  # None: dlt's default, so `dlt pipeline cekura_sessions ...` works
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def run(config: RunConfig, report: RunReport | None = None) -> RunOutcome:
    """One run; pass `report` to watch its progress from another thread."""
    report = report or RunReport()
    logs.register_secret(config.api_key)
    db_path = config.db_path.resolve()
    try:
        _check_db_path(db_path)
        with run_lock(db_path, report.run_id):
            return _locked_run(config, db_path, report)
    except LockHeld as error:
        return RunOutcome(EXIT_LOCKED, report, f"{error}; nothing was touched")
    except DatabaseBusy as error:
        return RunOutcome(EXIT_LOCKED, report, str(error))
    except (FatalError, LockUnavailable, DatabaseUnavailable) as error:
        return RunOutcome(EXIT_FATAL, report, str(error))


def _locked_run(config: RunConfig, db_path: Path, report: RunReport) -> RunOutcome:
    with connect(db_path, config.db_wait_seconds) as con:
        ledger.record_start(con, report)
    outcome = RunOutcome(EXIT_FATAL, report)
    try:
        _load(config, db_path, report)
        outcome = _after_load(config, db_path, report)
    except (FatalError, DatabaseBusy, DatabaseUnavailable) as error:
        outcome.message = str(error)
        raise
    except Exception as error:
        # a bug or an environment problem: one line for people, the traceback for --log-level DEBUG
        log.debug("run %s failed", report.run_id, exc_info=True)
        outcome.message = f"unexpected {type(error).__name__}: {first_line(error)} (rerun with --log-level DEBUG for details)"
        raise FatalError(outcome.message) from None
    finally:
        _record_finish(config, db_path, outcome)
    return outcome


def _load(config: RunConfig, db_path: Path, report: RunReport) -> LoadInfo:
    pipeline = make_pipeline(db_path, config.pipelines_dir)
    leftovers_completed = finish_leftover_packages(pipeline, db_path)
    try:
        with connect(db_path, config.db_wait_seconds) as con:
            if leftovers_completed:
                drop_repeated_rows(con)
            night = stored.read_night_state(con, db_path, config.db_wait_seconds)
        # the file is not held while the night waits on the network: a notebook or the DuckDB
        # shell can open it until the load
        source = cekura(**_source_overrides(config), retry=config.retry, report=report, night=night)
        pipeline.extract(source, loader_file_format="parquet")
        # Arrow's allocator keeps what the extract freed; hand it back before DuckDB's load
        # (peak RSS at M 430 MB -> 340 MB)
        pa.default_memory_pool().release_unused()
        _checkpoint("normalize", db_path)
        pipeline.normalize()
        _checkpoint("load", db_path)
        return pipeline.load()
    except (FatalError, DatabaseBusy, DatabaseUnavailable):
        raise
    except Exception as error:  # dlt wraps every step's failure; find what really happened
        raise FatalError(fatal_message(error, config.base_url, config.api_key_origin)) from None


def _after_load(config: RunConfig, db_path: Path, report: RunReport) -> RunOutcome:
    outcome = RunOutcome(EXIT_OK, report)
    if report.projects_failed and not report.projects_ok:
        raise FatalError(f"no project could be loaded: {report.failed_summary()}")
    with connect(db_path, config.db_wait_seconds) as con:
        listed.mark_listed(con, report)
        history.record_changes(con, report)
        _checkpoint("models", db_path)
        if config.build_models:
            try:
                _models_and_checks(con, outcome)
            except runner.ModelBuildError as error:
                outcome.exit_code, outcome.message = EXIT_PARTIAL, str(error)
                return outcome
    found = problems(report, outcome.checks)
    if found:
        outcome.exit_code, outcome.message = EXIT_PARTIAL, "; ".join(found)
    return outcome


def _models_and_checks(con: duckdb.DuckDBPyConnection, outcome: RunOutcome) -> None:
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
        outcome.model_rows = runner.build_models(con, fingerprint=fingerprint)
    outcome.checks = checks.run_checks(con)
    checks.record_checks(con, fingerprint, outcome.checks)


def _record_finish(config: RunConfig, db_path: Path, outcome: RunOutcome) -> None:
    status = {EXIT_OK: "succeeded", EXIT_PARTIAL: "partial"}.get(outcome.exit_code, "failed")
    try:
        with connect(db_path, config.db_wait_seconds) as con:
            ledger.record_finish(con, outcome.report, status, outcome.exit_code, outcome.message or None)
    except (DatabaseBusy, duckdb.Error) as error:
        log.error("could not record the run's end in the ledger: %s", error)


def _checkpoint(stage: str, db_path: Path) -> None:
    crash_points.pause_here(stage, db_path.with_name(f"{db_path.name}.paused-{stage}"))


def _check_db_path(db_path: Path) -> None:
    folder = db_path.parent
    if not folder.is_dir():
        raise FatalError(f"the folder of the database, {folder}, does not exist; create it or set CEKURA_DB")
    if not os.access(folder, os.W_OK) or (db_path.exists() and not os.access(db_path, os.W_OK)):
        raise FatalError(f"cannot write {db_path}; choose a writable path with --db or CEKURA_DB")


def _source_overrides(config: RunConfig) -> dict[str, Any]:
    """What the command line or the CEKURA_* aliases set; the rest dlt resolves from its own
    config ([sources.cekura] in .dlt/, SOURCES__CEKURA__* variables) or the defaults."""
    given = {
        "api_key": config.api_key,
        "base_url": config.base_url,
        "project_ids": config.project_ids,
        "concurrency": config.concurrency,
    }
    return {name: value for name, value in given.items() if value is not None}


