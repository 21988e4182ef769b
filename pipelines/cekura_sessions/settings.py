"""The run's defaults and names from the contract that are not the raw data's own
(the API's live in api/endpoints.py, the raw tables' in extract/contract.py)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DB = "cekura.duckdb"
DEFAULT_CONCURRENCY = 16  # requests in flight; a 429 pauses them all
# DuckDB spills to disk past this, so a night at 1,000,000 sessions stays near the memory of one
# at 200,000 (256 MB: L 551 MB instead of 999 MB peak RSS; 192 MB: M 380 MB instead of 404 MB,
# no slower in benchmarks/night.py)
DUCKDB_CONFIG = {"memory_limit": "192MB"}
DEMO_DB = "demo.duckdb"

PIPELINE_NAME = "cekura_sessions"
ANALYTICS_SCHEMA = "analytics"  # the models users query (CONTRACT.md)
STAGING_SCHEMA = "staging"  # staging views and their macros: the models' internals
META_SCHEMA = "cekura_meta"  # bookkeeping: what the models were built from, the checks' answers
RUNS_TABLE = "pipeline_runs"  # in the raw schema, written by run/ledger.py outside dlt

# the SQL ships inside the package (package data), so an installed wheel finds it anywhere
SQL_DIR = Path(__file__).resolve().parent / "models" / "sql"
