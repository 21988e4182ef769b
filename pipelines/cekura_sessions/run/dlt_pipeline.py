"""The dlt pipeline of one database file, its working folder beside the file, and what a killed
run left there."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import dlt

from cekura_sessions import logs, settings, test_hooks
from cekura_sessions.destination.database import Database
from cekura_sessions.destination.warehouse import DUCKDB, LockTimeout, as_warehouse, setting_error_in
from cekura_sessions.extract import contract
from cekura_sessions.run import interrupt

log = logging.getLogger(__name__)

_DATABASE_TABLE = f"{settings.META_SCHEMA}._database"  # one row: the file's database_id
_FOLDER_MARKER = "cekura_database"  # in dlt's working folder: the file it serves, {"path", "database_id"}


# dlt settings every night loads with, unless the environment says otherwise; dlt reads its
# configuration from the environment, so they are put there (make_pipeline)
DLT_DEFAULTS = {
    # without this, merge keeps a full copy of every load in cekura_raw_staging (docs/upstream-behaviour.md)
    "LOAD__TRUNCATE_STAGING_DATASET": "true",
    # a loaded job's file is never read again; dlt keeps it for ever otherwise (about 8 MB a full night)
    "LOAD__DELETE_COMPLETED_JOBS": "true",
}


def make_pipeline(database: Database, pipelines_dir: str | None = None) -> dlt.Pipeline:
    """The pipeline loading `database`; `pipelines_dir` None: its own folder (Database.pipelines_dir)."""
    for name, value in DLT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if not database.is_file:
        _say_how_postgres_loads()
    pipeline = dlt.pipeline(
        pipeline_name=database.dataset.pipeline_name,
        destination=database.dlt_destination(),
        dataset_name=database.dataset.raw,
        pipelines_dir=str(pipelines_dir or database.pipelines_dir()),
        progress=test_hooks.dlt_progress(),
    )
    # dlt's own handlers hold a SIGINT or SIGTERM until the load drains, then drop it when the
    # package completed; run/interrupt.py's handlers stop the run instead
    pipeline.runtime_config.intercept_signals = False
    logs.adopt_dlt_logger()
    return pipeline


def _say_how_postgres_loads() -> None:
    # without the ADBC driver dlt loads parquet into PostgreSQL through insert statements,
    # silently and several times slower (docs/upstream-behaviour.md)
    if importlib.util.find_spec("adbc_driver_postgresql") is not None:
        log.info("loading PostgreSQL with parquet through the ADBC driver")
    else:
        log.warning("the ADBC driver is not installed: dlt loads PostgreSQL with insert statements, "
                    "several times slower; install it with pip install 'cekura-sessions[postgres]'")


def prune_loaded_packages(pipeline: dlt.Pipeline, keep: int = settings.LOADED_PACKAGES_KEPT) -> int:
    """Delete all but the newest `keep` loaded packages; returns how many went. Recovery needs
    only the pending packages, and `dlt pipeline ... trace` reads the trace, not these; without
    this dlt keeps every package the folder ever loaded."""
    loaded = sorted(pipeline.list_completed_load_packages(), key=float)  # load ids are timestamps
    old = loaded[: max(len(loaded) - keep, 0)]
    for load_id in old:
        shutil.rmtree(pipeline.get_load_package_info(load_id).package_path, ignore_errors=True)
    return len(old)


def database_id(con: Any) -> str:
    """This database file's own id, made the first time a run opens it: a file that replaced
    another at the same path (deleted and created anew, a backup put back) has another id."""
    con = as_warehouse(con)
    con.execute(f"create schema if not exists {settings.META_SCHEMA}")
    con.execute(f"create table if not exists {_DATABASE_TABLE} (database_id text not null, created_at timestamptz not null)")
    found = con.execute(f"select database_id from {_DATABASE_TABLE} limit 1").fetchone()
    if found:
        return found[0]
    made = uuid.uuid4().hex
    con.execute(f"insert into {_DATABASE_TABLE} values (?, now())", [made])
    return made


def bind_to_database(pipeline: dlt.Pipeline, db_path: Path | str, database: str) -> None:
    """Start the folder afresh unless it belongs to this very file (`database`: its database_id).

    dlt's folder holds the schema it believes the destination has: a schema version stored in a
    file by a night whose other tables never reached it tells dlt to create nothing next time, and
    every later night fails with a CatalogException. And its pending packages were made for one
    file: they must never load into another. A folder named explicitly (`pipelines_dir`) may serve
    several files, and the file at a path may be replaced; a folder used before is dropped whole
    (state, schemas, packages) when the file it served is not this one."""
    marker = Path(pipeline.working_dir) / _FOLDER_MARKER
    mine = {"path": str(db_path), "database_id": database}
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if recorded != mine:
        if pipeline.has_pending_data:
            served = recorded["path"] if isinstance(recorded, dict) else "another database"
            if served == str(db_path):
                served = f"the file that was at {served} before this one"
            log.warning("discarding load packages left for %s (this run loads %s)", served, db_path)
        pipeline.drop()
        marker.write_text(json.dumps(mine), encoding="utf-8")


def load_waiting(pipeline: dlt.Pipeline, database: Database) -> Any:
    """`pipeline.load()`; on PostgreSQL started again while another session's lock stops it, for
    up to --db-wait, the wait logged once naming the holders (Warehouse.retry_on_locks). Each of
    dlt's statements waits at most postgres.LOAD_LOCK_TIMEOUT_SECONDS for a lock
    (Database.dlt_destination), and a load stopped so leaves its package pending, which the next
    load() carries on with. Raises LockTimeout past the wait (one line naming the holders), else
    what dlt raises."""
    if database.is_file:  # a DuckDB file has no row locks: its opens wait for readers instead
        info = pipeline.load()
        database.checkpoint()
        return info
    with database.connect(application="cekura-sessions load") as con:
        return con.retry_on_locks(lambda: _load_or_lock_timeout(pipeline), "dlt's load")


def _load_or_lock_timeout(pipeline: dlt.Pipeline) -> Any:
    try:
        return pipeline.load()
    except Exception as error:
        found = setting_error_in(error)
        # a job dlt retried itself ends in LoadClientJobRetry, which keeps only the message of
        # what PostgreSQL raised, not the error and its SQLSTATE
        if isinstance(found, LockTimeout) or "due to lock timeout" in str(error):
            raise LockTimeout(str(found or error)) from error
        raise


def finish_leftover_packages(pipeline: dlt.Pipeline, database: Database) -> bool:
    """Complete what a killed run left behind before extracting anything new; a plain
    `pipeline.run()` would stop there (dlt #3227). True when packages were completed: the
    caller then runs drop_repeated_rows. Call bind_to_database first. Raises LockTimeout when
    another session's lock kept the load waiting past --db-wait (the packages are kept)."""
    if not pipeline.has_pending_data:
        return False
    log.warning("completing load packages left by an interrupted run")
    try:
        pipeline.normalize()
        load_waiting(pipeline, database)
    except LockTimeout:
        raise  # waited for, not unfinishable: kept for the next run
    except Exception as error:  # noqa: BLE001 - a package we cannot finish must not block every later night
        interrupt.raise_if_received()  # stopped by a signal, not unfinishable: keep it for the next run
        log.error("could not complete the leftover packages (%s); discarding them", error)
        _discard_pending(pipeline)
        return False
    return True


def drop_repeated_rows(con: Any) -> int:
    """Remove the second copy of any session (or scenario-id row) a completed leftover package
    wrote twice; returns how many. A copy job killed after DuckDB committed it, but before dlt
    marked it done, runs again when its package is completed; the merge, told that staged rows
    are unique (extract/batch.py sets repeats aside), would then insert both copies."""
    con = as_warehouse(con)
    removed = 0
    row = _ROW_ADDRESS[con.dialect]
    for table, key in ((contract.SESSIONS_TABLE, "id"), (contract.SCENARIO_IDS_TABLE, "session_id, position")):
        if not con.has_table(contract.RAW_SCHEMA, table):  # not created yet
            continue
        name = f"{contract.RAW_SCHEMA}.{table}"
        removed += con.changed_rows(f"""
            delete from {name} where {row} in (
                select {row} from (
                    select {row}, row_number() over (partition by {key} order by {row}) as copy from {name}
                ) as copies where copy > 1
            )
        """)
    if removed:
        log.warning("removed %d rows the interrupted run's package had loaded twice", removed)
    return removed


# each engine's address of a row within its table (neither table has a unique key to tell copies apart)
_ROW_ADDRESS = {DUCKDB: "rowid", "postgres": "ctid"}


def _discard_pending(pipeline: dlt.Pipeline) -> None:
    # abort_packages, its successor, finishes the abort through load(), which would write to
    # this run's database; dropping touches only the pipeline folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pipeline.drop_pending_packages()
