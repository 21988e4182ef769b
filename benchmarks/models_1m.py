"""Time build_models (and run_checks) on 1,000,000 synthetic sessions. Not a test.

The raw tables are filled by DuckDB SQL directly (no dlt, no Python rows), in raw form:
timestamps as ISO-8601 text in mixed offsets, message_count as text, 0-5 scenario ids a session.
Target: build_models <= 5 s.

    .venv/bin/python benchmarks/models_1m.py [--sessions N] [--repeat 3] [--db PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
from cekura_sessions.extract.contract import raw_tables_ddl
from cekura_sessions.models.checks import run_checks
from cekura_sessions.models.runner import build_models

TARGET_SECONDS = 5.0
PROJECTS = 200

# zones chosen to exercise the per-project local day; one unknown, one empty, one NULL
ZONES = (
    "['America/New_York', 'Asia/Kolkata', 'Australia/Sydney', 'Pacific/Kiritimati', "
    "'Europe/Berlin', 'UTC', 'America/Los_Angeles', 'Mars/Olympus_Mons', '', NULL]"
)

FILL_PROJECTS = f"""
insert into cekura_raw.projects
select
    i as id,
    'Project ' || i as name,
    1 + i % 7 as organization_id,
    'Org ' || (1 + i % 7) as organization_name,
    {ZONES}[1 + i % 10] as timezone,
    case when i % 25 = 0 then true when i % 3 = 0 then null else false end as is_deleted,
    '2023-06-01T09:00:00Z' as created_at,
    '2024-01-15T10:30:00+00:00' as updated_at,
from range(1, {PROJECTS} + 1) as r(i)
"""

# created_at spread over a year; updated_at 0-4 h later, 1 in 500 before (clock skew)
FILL_SESSIONS = f"""
insert into cekura_raw.scenario_improvement_sessions
with base as (
    select
        i,
        timestamptz '2024-01-01 00:00:00+00' + to_microseconds((hash(i) % 31536000000000)::bigint) as created,
        to_microseconds((hash(i * 7) % 14400000000)::bigint) as took,
    from range(1, $sessions + 1) as r(i)
),

shaped as (
    select
        *,
        case when i % 500 = 0 then created - took else created + took end as updated,
    from base
)

select
    i as id,
    'Session ' || i as title,
    case when i % 50 = 0 then null else 1 + i % {PROJECTS} end as project,
    ['completed', 'completed', 'completed', 'failed', 'cancelled', 'in_progress', 'pending',
     'completed', 'failed', 'archived'][1 + (hash(i * 3) % 10)::bigint] as status,
    -- the same instant written three ways: Z with microseconds, +05:30, -08:00
    case i % 3
        when 0 then strftime(timezone('UTC', created), '%Y-%m-%dT%H:%M:%S.%fZ')
        when 1 then strftime(timezone('UTC', created) + interval 330 minute, '%Y-%m-%dT%H:%M:%S') || '+05:30'
        else strftime(timezone('UTC', created) - interval 8 hour, '%Y-%m-%dT%H:%M:%S.%f') || '-08:00'
    end as created_at,
    strftime(timezone('UTC', updated), '%Y-%m-%dT%H:%M:%S.%f') || '+00:00' as updated_at,
    case when i % 20 = 0 then null else (hash(i) % 60)::bigint::text end as message_count,
    1 + i % {PROJECTS} as project_id,
from shaped
"""

FILL_SCENARIO_IDS = """
insert into cekura_raw.scenario_improvement_sessions__scenario_ids
select
    id as session_id,
    project_id,
    p as position,
    (1 + hash(id * 31 + p) % 400)::bigint as value,
from cekura_raw.scenario_improvement_sessions,
    range(0, (hash(id * 13) % 6)::bigint) as r(p)
"""


def fill(con: duckdb.DuckDBPyConnection, sessions: int) -> dict[str, int]:
    con.execute(raw_tables_ddl())
    con.execute(FILL_PROJECTS)
    con.execute(FILL_SESSIONS, {"sessions": sessions})
    con.execute(FILL_SCENARIO_IDS)
    con.execute("checkpoint")
    tables = ("projects", "scenario_improvement_sessions", "scenario_improvement_sessions__scenario_ids")
    return {t: con.execute(f"select count(*) from cekura_raw.{t}").fetchone()[0] for t in tables}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", type=Path, help="DuckDB file (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "models_1m.duckdb"
        con = duckdb.connect(str(db))
        started = time.perf_counter()
        raw = fill(con, args.sessions)
        print(f"raw rows: {raw} (generated in {time.perf_counter() - started:.2f} s)")
        threads = con.execute("select current_setting('threads')").fetchone()[0]
        print(f"duckdb {duckdb.__version__}, threads {threads}")

        builds = []
        for attempt in range(1, args.repeat + 1):
            started = time.perf_counter()
            counts = build_models(con)
            builds.append(time.perf_counter() - started)
            print(f"build_models #{attempt}: {builds[-1]:.2f} s")
        print(f"model rows: {counts}")

        started = time.perf_counter()
        results = run_checks(con)
        checks = time.perf_counter() - started
        print(f"run_checks: {checks:.2f} s")
        for r in results:
            print(f"  {r.name:<48} {r.severity:<8} {r.offending_rows:>9}")

        median = statistics.median(builds)
        verdict = "within" if median <= TARGET_SECONDS else "OVER"
        print(f"build_models median {median:.2f} s, best {min(builds):.2f} s: {verdict} the {TARGET_SECONDS:.0f} s target")
        con.close()


if __name__ == "__main__":
    main()
