"""Constants shared by every module: endpoints, defaults, names from the contract."""

from __future__ import annotations

from pathlib import Path

DEFAULT_BASE_URL = "https://api.cekura.ai"
DEFAULT_DB = "cekura.duckdb"
DEFAULT_CONCURRENCY = 16  # requests in flight; a 429 pauses them all
# DuckDB spills to disk past this, so a night at 1,000,000 sessions stays near the memory of one
# at 200,000 (256 MB: L 551 MB instead of 999 MB peak RSS; 192 MB: M 380 MB instead of 404 MB,
# no slower in benchmarks/night.py)
DUCKDB_CONFIG = {"memory_limit": "192MB"}
DEMO_DB = "demo.duckdb"
API_KEY_HEADER = "X-CEKURA-API-KEY"

PROJECTS_PATH = "/user/v1/projects/"
SESSIONS_PATH = "/test_framework/v1/scenario-improvement-sessions/"

PIPELINE_NAME = "cekura_sessions"
RAW_SCHEMA = "cekura_raw"
ANALYTICS_SCHEMA = "analytics"

PROJECTS_TABLE = "projects"
SESSIONS_TABLE = "scenario_improvement_sessions"
SCENARIO_IDS_TABLE = "scenario_improvement_sessions__scenario_ids"
PROJECT_LISTINGS_TABLE = "project_listings"
STATUS_HISTORY_TABLE = "session_status_history"
REJECTED_ROWS_TABLE = "rejected_rows"
RUNS_TABLE = "pipeline_runs"

SESSION_STATUSES = ("pending", "in_progress", "completed", "cancelled", "failed")

# the SQL ships inside the package (package data), so an installed wheel finds it anywhere
SQL_DIR = Path(__file__).resolve().parent / "models" / "sql"

# Marker column of the rows that clear a project whose listing became empty (dlt hard_delete):
# always NULL in the stored rows.
TOMBSTONE_COLUMN = "_cekura_tombstone"
