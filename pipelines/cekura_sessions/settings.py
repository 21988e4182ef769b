"""The run's defaults and names from the contract that are not the raw data's own
(the API's live in api/endpoints.py, the raw tables' in extract/contract.py)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DB = "cekura.duckdb"
DEFAULT_CONCURRENCY = 16  # requests in flight; a 429 pauses them all
DUCKDB_CONFIG = {
    # DuckDB spills to disk past this, so a night at 1,000,000 sessions stays near the memory of one
    # at 200,000 (256 MB: L 551 MB instead of 999 MB peak RSS; 192 MB: M 380 MB instead of 404 MB,
    # no slower in benchmarks/night.py)
    "memory_limit": "192MB",
    # DuckDB 2.0 writes storage version 69 unless told otherwise; the DuckDB shell people install
    # (`duckdb-cli` 1.5.x) reads up to 68. A file keeps the version it was created with (measured:
    # later opens without this setting still write 68), and is created through this config
    # (destination/database.py _open)
    "storage_compatibility_version": "v1.5.0",
}
DEMO_DB = "demo.duckdb"

PIPELINE_NAME = "cekura_sessions"
PIPELINES_DIR_SUFFIX = ".dlt"  # dlt's working folder of `cekura.duckdb` is `cekura.duckdb.dlt/` beside it
# loaded packages are history, never recovery (that needs only the pending ones): the newest is kept,
# without its data files, for `dlt pipeline ... load-package`
LOADED_PACKAGES_KEPT = 1
# after SIGINT/SIGTERM, how long the run may take to unwind (a fetch thread can sit in a slow
# answer for its whole deadline) before it records the interruption and exits where it stands
INTERRUPT_GRACE_SECONDS = 10.0
# the default dataset's schemas; destination/dataset.py names those of `--dataset NAME`
RAW_SCHEMA = "cekura_raw"  # dlt's dataset: the raw tables
ANALYTICS_SCHEMA = "analytics"  # the models users query (README.md)
STAGING_SCHEMA = "staging"  # staging views and their macros: the models' internals
META_SCHEMA = "cekura_meta"  # bookkeeping: what the models were built from, the checks' answers
RUNS_TABLE = "pipeline_runs"  # in the raw schema, written by run/bookkeeping.py outside dlt

# the SQL ships inside the package (package data), so an installed wheel finds it anywhere
SQL_DIR = Path(__file__).resolve().parent / "models" / "sql"

# how long `run` waits, at each open of a DuckDB file (its own and dlt's), while a reader holds it
RUN_DB_WAIT_SECONDS = 600.0
