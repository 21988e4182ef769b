"""Where a night of the pipeline spends its time: stage timers, a pyinstrument profile, and the
source's per-row steps timed in isolation. For the lead's decisions, not a test.

    .venv/bin/pip install pyinstrument        # profiling only; not a project dependency
    .venv/bin/python benchmarks/profile_night.py [--projects 500] [--page-size 100] [--latency-ms 0] [--out bench-results/profile]

The fake API runs in its own subprocess (as in night.py). In this process, against data of the
M shape (500 projects x 400 sessions, clean):

1. fetch only: the project's CekuraClient.list_sessions over every project with 8 and 16 threads
   (16: the source's default), against the floor's fetch (16 threads, http.client keep-alive, orjson);
2. the source's per-row steps on the fetched listings, each timed alone on one core:
   the one conversion (extract/convert.py), against the floor's Arrow tables;
3. one full night and one no-change night of ``pipeline.run`` with stage timers, each under
   pyinstrument (which samples the main thread: the fetch threads show up as the main thread
   waiting on their futures). Text and HTML profiles go to --out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import night  # noqa: E402  (the benchmark's server handle)


def best_of(n: int, fn: Any) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fetch_with_client(url: str, project_ids: list[int], concurrency: int) -> list[Any]:
    from cekura_sessions.api.client import CekuraClient

    client = CekuraClient(url, night.API_KEY)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(client.list_sessions, project_ids))


def fetch_floor(url: str, project_ids: list[int], workers: int) -> list[list[Any]]:
    get = night.floor_getter(url)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda project_id: night.floor_listing_rows(get, project_id), project_ids))


def per_row_steps(listings: list[tuple[int, list[Any]]]) -> dict[str, float]:
    import numpy as np
    import pyarrow as pa
    from cekura_sessions.extract import contract, convert

    sessions = sum(len(rows) for _, rows in listings)
    out: dict[str, float] = {}
    out["session_rejection on every row (for scale)"] = best_of(
        3, lambda: [contract.session_rejection(r) for _, rows in listings for r in rows])
    rows = [row for _, project_rows in listings for row in project_rows]
    project_ids = np.repeat(np.array([p for p, _ in listings], dtype=np.int64), [len(r) for _, r in listings])
    out["convert_sessions, all listings at once"] = best_of(3, lambda: convert.convert_sessions(rows, project_ids))
    flush = 20_000
    out["convert_sessions, in flushes of 20,000"] = best_of(3, lambda: [
        convert.convert_sessions(rows[i:i + flush], project_ids[i:i + flush]) for i in range(0, len(rows), flush)])
    # for comparison: Arrow straight from the parsed rows (what the floor does)
    schema = pa.schema([("id", pa.int64()), ("title", pa.string()), ("project", pa.int64()),
                        ("scenario_ids", pa.list_(pa.int64())), ("status", pa.string()), ("created_at", pa.string()),
                        ("updated_at", pa.string()), ("message_count", pa.int64())])
    out["(floor) pa.Table.from_pylist per listing"] = best_of(3, lambda: [pa.Table.from_pylist(rows, schema=schema) for _, rows in listings])
    out["sessions"] = sessions
    return out


class StageMeter:
    """Seconds and peak RSS per stage of a run, and the time of every SQL statement dlt sends to DuckDB."""

    STAGES = (("dlt.Pipeline", "extract"), ("dlt.Pipeline", "normalize"), ("dlt.Pipeline", "load"),
              ("history", "record_changes"), ("models", "build_models"), ("checks", "run_checks"))

    def __init__(self) -> None:
        import dlt
        from cekura_sessions.models import checks
        from cekura_sessions.models import runner as models
        from cekura_sessions.run import bookkeeping
        from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self.sql: list[tuple[float, str]] = []
        self.stage = "other"
        self._owners = {"dlt.Pipeline": dlt.Pipeline, "history": bookkeeping, "models": models, "checks": checks}
        self._saved: list[tuple[Any, str, Any]] = []
        self._stop = threading.Event()
        for owner_name, name in self.STAGES:
            self._wrap(self._owners[owner_name], name)
        original_query = DuckDbSqlClient.execute_query
        meter = self
        from contextlib import contextmanager

        @contextmanager
        def timed_query(client: Any, query: Any, *a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            with original_query(client, query, *a, **k) as cursor:
                meter.sql.append((time.perf_counter() - t0, " ".join(str(query).split())))
                yield cursor

        self._saved.append((DuckDbSqlClient, "execute_query", original_query))
        DuckDbSqlClient.execute_query = timed_query
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        meter = self

        def wrapper(*a: Any, **k: Any) -> Any:
            previous, meter.stage = meter.stage, name
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                meter.seconds[name] = meter.seconds.get(name, 0.0) + time.perf_counter() - t0
                meter.stage = previous

        self._saved.append((owner, name, original))
        setattr(owner, name, wrapper)

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**20
            stage = self.stage
            self.peak_mb[stage] = max(self.peak_mb.get(stage, 0.0), rss)
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self._sampler.join()
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)


def storage(db: Path) -> list[tuple[str, float, int]]:
    """(schema.table, MB of distinct blocks, rows) for every table, and the file's used/free blocks."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "select schema_name, table_name, estimated_size from duckdb_tables() order by 1, 2"
        ).fetchall()
        out = []
        for schema, table, rows in tables:
            blocks = con.execute(
                f"select count(distinct block_id) from pragma_storage_info('{schema}.{table}') where persistent"
            ).fetchone()[0]
            out.append((f"{schema}.{table}", blocks * 256 / 1024, rows))  # 256 KiB blocks
        size = con.execute("select block_size, total_blocks, used_blocks, free_blocks, wal_size from pragma_database_size()").fetchone()
        out.append((f"file: block_size {size[0]}, total {size[1]}, used {size[2]}, free {size[3]} blocks, wal {size[4]}", 0.0, 0))
        return out
    finally:
        con.close()


def measured_night(label: str, db: Path, pipelines_dir: Path, url: str, out: Path, profile: bool) -> dict[str, Any]:
    from cekura_sessions.logs import setup_logging
    from cekura_sessions.run import night as pipeline

    setup_logging("WARNING", "text")
    meter = StageMeter()
    config = pipeline.RunConfig(db=db, api_key=night.API_KEY, base_url=url, pipelines_dir=str(pipelines_dir))
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002)
        profiler.start()
    t0 = time.perf_counter()
    try:
        outcome = pipeline.run(config)
    finally:
        total = time.perf_counter() - t0
        if profiler is not None:
            profiler.stop()
        meter.close()
    if profiler is not None:
        (out / f"{label}.txt").write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        (out / f"{label}-all.txt").write_text(profiler.output_text(unicode=True, color=False, show_all=True))
        (out / f"{label}.html").write_text(profiler.output_html())
    with open(out / f"{label}-sql.txt", "w") as f:
        for seconds, text in meter.sql:
            f.write(f"{seconds:.4f}  {text}\n\n")
    return {"total": total, "exit_code": outcome.exit_code, "seconds": meter.seconds, "peak_mb": meter.peak_mb,
            "sql": sorted(meter.sql, reverse=True), "storage": storage(db)}


def print_night(label: str, night_result: dict[str, Any]) -> None:
    print(f"\n{label}: {night_result['total']:.2f} s (exit {night_result['exit_code']})")
    print(f"  {'stage':<16} {'seconds':>8} {'peak RSS MB':>12}")
    for stage in ("other", "extract", "normalize", "load", "record_changes", "build_models", "run_checks"):
        print(f"  {stage:<16} {night_result['seconds'].get(stage, 0.0):8.2f} {night_result['peak_mb'].get(stage, 0.0):12.0f}")
    sql = night_result["sql"]
    print(f"  dlt's SQL in DuckDB: {len(sql)} statements, {sum(t for t, _ in sql):.2f} s; the slowest:")
    for seconds, text in sql[:8]:
        print(f"    {seconds:6.3f}  {text[:150]}")
    print("  storage after the night (MB of 256 KiB blocks, rows):")
    for name, mb, rows in night_result["storage"]:
        print(f"    {mb:7.2f}  {rows:>9}  {name}" if mb or rows else f"    {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--sessions-per-project", type=int, default=400)
    parser.add_argument("--page-size", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--out", default="bench-results/profile")
    parser.add_argument("--fetch-only", action="store_true", help="only step 1 (e.g. with --page-size 100 or --latency-ms 20)")
    parser.add_argument("--nights-only", action="store_true", help="only step 3 (peak RSS per stage of a fresh process)")
    parser.add_argument("--no-pyinstrument", action="store_true", help="step 3 without the pyinstrument nights")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scale = night.Scale("P", args.projects, args.sessions_per_project, latency_ms=args.latency_ms, page_size=args.page_size)
    work = Path(tempfile.mkdtemp(prefix="cekura-profile-"))
    server = night.Server(scale, work / "server.log")
    try:
        from cekura_sessions.api.client import CekuraClient

        project_ids = [p["id"] for p in CekuraClient(server.url, night.API_KEY).list_projects()]
        print(f"{len(project_ids)} projects, {server.expected['sessions']:,} sessions")
        if args.nights_only:
            return nights(args, server, work, out)
        fetch_with_client(server.url, project_ids[:20], 8)  # warm
        t_client = best_of(3, lambda: fetch_with_client(server.url, project_ids, 8))
        t_client16 = best_of(3, lambda: fetch_with_client(server.url, project_ids, 16))
        t_floor = best_of(3, lambda: fetch_floor(server.url, project_ids, 16))
        print("\nfetch + parse only (best of 3):")
        print(f"  CekuraClient.list_sessions, 8 threads                        {t_client:6.2f} s")
        print(f"  CekuraClient.list_sessions, 16 threads (the source's default) {t_client16:6.2f} s")
        print(f"  floor fetch: http.client + orjson, 16 threads               {t_floor:6.2f} s")
        if args.fetch_only:
            return 0
        fetched = fetch_with_client(server.url, project_ids, 16)
        listings = list(zip(project_ids, [listing.rows for listing in fetched]))
        steps = per_row_steps(listings)
        print(f"\nthe source's per-row steps on {steps.pop('sessions'):,} fetched sessions (one thread, best of 3):")
        for name, seconds in steps.items():
            print(f"  {name:<45} {seconds:6.2f} s")
        del listings
        return nights(args, server, work, out)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)


def nights(args: argparse.Namespace, server: Any, work: Path, out: Path) -> int:
    for label in ("full-night", "nochange-night"):
        print_night(label, measured_night(label, work / "p.duckdb", work / "dlt", server.url, out, profile=False))
    if not args.no_pyinstrument:
        for label in ("full-night", "nochange-night"):
            measured_night(label + "-pyinstrument", work / "q.duckdb", work / "dlt-q", server.url, out, profile=True)
        print(f"\npyinstrument profiles (main thread): {out}/*-pyinstrument.txt, -all.txt, .html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
