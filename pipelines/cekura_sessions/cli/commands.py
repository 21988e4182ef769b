"""The commands that work on what is already loaded: `models`, `check`, `status`."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from cekura_sessions.destination.warehouse import WarehouseError
from cekura_sessions.extract import contract
from cekura_sessions.models import checks, runner
from cekura_sessions.run import status as status_reads

_RAW = contract.RAW_SCHEMA


def rebuild_models(db_path: Path) -> int:
    if not _exists(db_path):
        return 2
    started = time.monotonic()
    try:
        with duckdb.connect(str(db_path)) as con:
            rows = runner.build_models(con)
    except duckdb.IOException as error:
        return _fail(f"cannot open {db_path}: {str(error).splitlines()[0]}")
    except runner.ModelBuildError as error:
        return _fail(f"{error}; the previous models are unchanged")
    for name, count in rows.items():
        print(f"{name:<32} {count:>10} rows")
    print(f"built {len(rows)} models in {time.monotonic() - started:.2f} s")
    return 0


def check(db_path: Path) -> int:
    if not _exists(db_path):
        return 2
    try:
        with duckdb.connect(str(db_path), read_only=True) as con:
            results = checks.run_checks(con)
    except (duckdb.Error, WarehouseError) as error:
        return _fail(f"cannot run the checks on {db_path}: {str(error).splitlines()[0]}; run `cekura-sessions models` first")
    width = max([len(r.name) for r in results] + [5])
    print(f"{'check':<{width}} {'severity':<8} {'offending rows':>14}  result")
    for result in results:
        verdict = "ok" if result.passed else ("FAIL" if result.severity == "error" else "warn")
        print(f"{result.name:<{width}} {result.severity:<8} {result.offending_rows:>14}  {verdict}")
    failed = [r.name for r in results if not r.passed and r.severity == "error"]
    if failed:
        print(f"cekura-sessions: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def status(db_path: Path, max_age_hours: float, recent_runs: int) -> int:
    if not _exists(db_path):
        return 2
    try:
        with duckdb.connect(str(db_path), read_only=True) as con:
            runs = status_reads.recent_runs(con, recent_runs)
            freshness = status_reads.project_freshness(con)
            counts = status_reads.row_counts(con)
            newest_success = status_reads.newest_success(con) if runs else None
    except duckdb.IOException as error:
        return _fail(f"cannot open {db_path}: {str(error).splitlines()[0]}")
    _print_runs(runs)
    _print_freshness(freshness)
    print("rows: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    return _freshness_verdict(newest_success, max_age_hours)








def _print_runs(runs: list[tuple]) -> None:
    print(f"{'run':<17} {'started (UTC)':<20} {'took':>7} {'status':<10} {'exit':>4} {'ok':>5} {'failed':>6} {'sessions':>9} {'requests':>8} {'retries':>7}")
    for run_id, started, finished, status, exit_code, ok, failed, sessions, requests, retries, error in runs:
        took = f"{(finished - started).total_seconds():.1f}s" if finished else "-"
        shown_status = status if finished else "unfinished"
        print(
            f"{run_id:<17} {started.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} {took:>7} {shown_status:<10} "
            f"{_dash(exit_code):>4} {_dash(ok):>5} {_dash(failed):>6} {_dash(sessions):>9} {_dash(requests):>8} {_dash(retries):>7}"
        )
        if error:
            print(f"{'':<17} {error}")


def _print_freshness(freshness: list[tuple]) -> None:
    if not freshness:
        print("no project has been loaded yet")
        return
    now = datetime.now(timezone.utc)
    stalest = freshness[:5]
    print(f"{len(freshness)} project(s) loaded; stalest first:")
    for project_id, name, listed_at, sessions in stalest:
        age_hours = (now - listed_at).total_seconds() / 3600
        print(f"  project {project_id:<8} {(name or '?')[:30]:<30} last loaded {listed_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({age_hours:.1f} h ago), {sessions} sessions")




def _freshness_verdict(newest_success: datetime | None, max_age_hours: float) -> int:
    if newest_success is None:
        print("cekura-sessions: no run has succeeded yet", file=sys.stderr)
        return 1
    age = datetime.now(timezone.utc) - newest_success
    if age > timedelta(hours=max_age_hours):
        print(f"cekura-sessions: the newest successful run is {age.total_seconds() / 3600:.1f} h old "
              f"(limit {max_age_hours:g} h)", file=sys.stderr)
        return 1
    return 0


def _exists(db_path: Path) -> bool:
    if db_path.exists():
        return True
    _fail(f"{db_path} does not exist; run `cekura-sessions run` first (or pass --db)")
    return False


def _fail(message: str) -> int:
    print(f"cekura-sessions: {message}", file=sys.stderr)
    return 2


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
