"""The dlt pipeline of one database file, and what a killed run left in its folder."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import dlt
import duckdb
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from cekura_sessions import logs, settings
from cekura_sessions.extract import contract

log = logging.getLogger(__name__)


def make_pipeline(db_path: Path, pipelines_dir: str | None) -> dlt.Pipeline:
    # without this, merge keeps a full copy of every load in cekura_raw_staging (GOTCHAS.md)
    os.environ.setdefault("LOAD__TRUNCATE_STAGING_DATASET", "true")
    credentials = DuckDbCredentials(str(db_path), global_config=dict(settings.DUCKDB_CONFIG))
    pipeline = dlt.pipeline(
        pipeline_name=settings.PIPELINE_NAME,
        destination=dlt.destinations.duckdb(credentials),
        dataset_name=contract.RAW_SCHEMA,
        pipelines_dir=pipelines_dir,
    )
    logs.adopt_dlt_logger()
    return pipeline


def finish_leftover_packages(pipeline: dlt.Pipeline, db_path: Path) -> bool:
    """Complete what a killed run left behind before extracting anything new; a plain
    `pipeline.run()` would stop there (dlt #3227). True when packages were completed: the
    caller then runs drop_repeated_rows."""
    marker = Path(pipeline.working_dir) / "cekura_db_path"
    previous_db = marker.read_text(encoding="utf-8") if marker.exists() else str(db_path)
    marker.write_text(str(db_path), encoding="utf-8")
    if not pipeline.has_pending_data:
        return False
    if previous_db != str(db_path):
        # the pipeline folder is shared by name; never load another database's leftovers here
        log.warning("discarding load packages left for %s (this run loads %s)", previous_db, db_path)
        _discard_pending(pipeline)
        return False
    log.warning("completing load packages left by an interrupted run")
    try:
        pipeline.normalize()
        pipeline.load()
    except Exception as error:  # noqa: BLE001 - a package we cannot finish must not block every later night
        log.error("could not complete the leftover packages (%s); discarding them", error)
        _discard_pending(pipeline)
        return False
    return True


def drop_repeated_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Remove the second copy of any session (or scenario-id row) a completed leftover package
    wrote twice; returns how many. A copy job killed after DuckDB committed it, but before dlt
    marked it done, runs again when its package is completed; the merge, told that staged rows
    are unique (extract/batch.py sets repeats aside), would then insert both copies."""
    removed = 0
    for table, key in ((contract.SESSIONS_TABLE, "id"), (contract.SCENARIO_IDS_TABLE, "session_id, position")):
        name = f"{contract.RAW_SCHEMA}.{table}"
        try:
            removed += con.execute(f"""
                delete from {name} where rowid in (
                    select rowid from (
                        select rowid, row_number() over (partition by {key} order by rowid) as copy from {name}
                    ) where copy > 1
                )
            """).fetchone()[0]
        except duckdb.CatalogException:  # not created yet
            continue
    if removed:
        log.warning("removed %d rows the interrupted run's package had loaded twice", removed)
    return removed


def _discard_pending(pipeline: dlt.Pipeline) -> None:
    # abort_packages, its successor, finishes the abort through load(), which would write to
    # this run's database; dropping touches only the pipeline folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pipeline.drop_pending_packages()
