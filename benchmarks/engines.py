"""Engine benchmark: the same nights into DuckDB and into a real PostgreSQL (pgserver), side by
side: a full night, a no-change night and a changed night (every live project changed), each in
its own process, with wall time, the run's own stages, peak RSS and the rows verified; then the
full night on PostgreSQL at half and full scale, to show no step grows faster than the data.

    .venv/bin/python benchmarks/engines.py                  # M: 500 projects x 400 sessions
    .venv/bin/python benchmarks/engines.py --projects 100   # quicker, for development

The fake API is night.py's server (same data, same seed); each night runs night.py's client
(`--client pipeline`), which is `cekura-sessions run` in process with its stages timed.
Writes bench-results/engines.md and engines.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import night as bench  # noqa: E402 - the night benchmark's server and client, reused as they are

NIGHTS = ("full", "nochange", "changed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=500, help="projects at full scale (400 sessions each)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three nights per engine")
    parser.add_argument("--out", default=str(bench.REPO / "bench-results"), help="where engines.md/json go")
    args = parser.parse_args()
    from support.postgres import PostgresServer  # the tests' pgserver helper: PostgreSQL 16 from pip

    work = Path(tempfile.mkdtemp(prefix="cekura-engines-"))
    postgres = PostgresServer(work / "pg")
    rows: list[dict[str, Any]] = []
    try:
        for projects in (args.projects // 2, args.projects):
            scale = bench.Scale(f"{projects}x400", projects, 400)
            server = bench.Server(scale, work / f"server-{projects}.log")
            try:
                engines = ("duckdb", "postgres") if projects == args.projects else ("postgres",)
                for rnd in range(1, args.rounds + 1):
                    for engine in engines:
                        db = str(work / f"{projects}-{rnd}.duckdb") if engine == "duckdb" else postgres.new_database()
                        nights = NIGHTS if projects == args.projects else ("full",)
                        rows += _nights(server, scale, engine, db, work / f"{engine}-{projects}-{rnd}", nights)
            finally:
                server.close()
    finally:
        postgres.stop()
    report = _report(rows, args.projects)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines.json").write_text(json.dumps({"machine": bench.machine(), "runs": rows}, indent=1, default=str))
    (out / "engines.md").write_text(report)
    print(report)
    return 0 if all(r["verified"] for r in rows) else 1


def _nights(server: bench.Server, scale: bench.Scale, engine: str, db: str, folder: Path,
            nights: tuple[str, ...]) -> list[dict[str, Any]]:
    """A full night, the same data again, then the next night's data, into one database."""
    folder.mkdir(parents=True)
    out = []
    for night in nights:
        expected = server.ask("dataset", name="changed" if night == "changed" else "base")["expected"]
        server.ask("reset")
        result_path = folder / f"{night}.json"
        command = [sys.executable, bench.__file__, "--client", "pipeline", "--url", server.url, "--db", db,
                   "--pipelines-dir", str(folder / "dlt"), "--result", str(result_path)]
        started = time.perf_counter()
        with open(folder / f"{night}.log", "w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=bench._child_env())
            status, rusage, killed = bench._wait(proc, bench.CLIENT_TIMEOUT_S, bench.CLIENT_RSS_CAP_MB)
        wall = time.perf_counter() - started
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        counts, problems = _verify(engine, db, expected)
        if status != 0 or result.get("exit_code") != 0 or killed:
            problems.append(f"exit {status}/{result.get('exit_code')}: {result.get('message', '')} {killed}")
        row = {"engine": engine, "scale": scale.name, "sessions": expected["sessions"], "night": night,
               "wall_s": round(wall, 2), "work_s": round(result.get("work_seconds", float("nan")), 2),
               "stages": {k: round(v, 2) for k, v in result.get("stages", {}).items()},
               "peak_rss_mb": round(rusage.ru_maxrss / 1024), "verified": not problems, "problems": problems}
        print(f"{engine:<9} {scale.name:<8} {night:<9} wall {wall:6.2f} s  rss {row['peak_rss_mb']:5d} MB  "
              f"{'ok' if not problems else 'FAILED: ' + '; '.join(problems)}", flush=True)
        out.append(row)
    return out


def _verify(engine: str, db: str, expected: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """The raw tables' counts and id sums, and the models' row counts, against the served data."""
    if engine == "duckdb":
        import duckdb

        con: Any = duckdb.connect(db, read_only=True)
    else:
        from cekura_sessions.destination.warehouse import as_warehouse
        from support import postgres

        con = as_warehouse(postgres.connect(db))
    try:
        one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        counts = {
            "sessions": one("select count(*) from cekura_raw.scenario_improvement_sessions"),
            "session_id_sum": int(one("select sum(id) from cekura_raw.scenario_improvement_sessions") or 0),
            "scenario_rows": one("select count(*) from cekura_raw.scenario_improvement_sessions__scenario_ids"),
            "analytics_sessions": one("select count(*) from analytics.sessions"),
        }
    finally:
        con.close()
    want = {"sessions": expected["sessions"], "session_id_sum": expected["session_id_sum"],
            "scenario_rows": expected["scenario_rows"], "analytics_sessions": expected["sessions"]}
    return counts, [f"{k}: {v} != {want[k]}" for k, v in counts.items() if v != want[k]]


def _report(rows: list[dict[str, Any]], projects: int) -> str:
    def median(engine: str, scale: str, night: str, key: str) -> float | None:
        values = [r[key] if key != "load" else r["stages"].get("load", float("nan"))
                  for r in rows if (r["engine"], r["scale"], r["night"]) == (engine, scale, night)]
        return statistics.median(values) if values else None

    full = f"{projects}x400"
    half = f"{projects // 2}x400"
    lines = [f"# DuckDB and PostgreSQL at {projects * 400:,} sessions ({projects} projects x 400)", "",
             "medians of the rounds; wall = the process, start to exit; every run verified against the served data", "",
             "| night | DuckDB wall s | PostgreSQL wall s | PostgreSQL / DuckDB | DuckDB peak RSS MB | PostgreSQL peak RSS MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for night in NIGHTS:
        d, p = median("duckdb", full, night, "wall_s"), median("postgres", full, night, "wall_s")
        dr, pr = median("duckdb", full, night, "peak_rss_mb"), median("postgres", full, night, "peak_rss_mb")
        ratio = f"{p / d:.2f}x" if d and p else "-"
        lines.append(f"| {night} | {d:.2f} | {p:.2f} | {ratio} | {dr:.0f} | {pr:.0f} |")
    lines += ["", "PostgreSQL full night by scale (a step that grew faster than the data would show here):", "",
              "| sessions | wall s | load stage s | wall per 100k sessions |", "| ---: | ---: | ---: | ---: |"]
    for scale, sessions in ((half, projects // 2 * 400), (full, projects * 400)):
        wall, load = median("postgres", scale, "full", "wall_s"), median("postgres", scale, "full", "load")
        lines.append(f"| {sessions:,} | {wall:.2f} | {load:.2f} | {wall / sessions * 100_000:.2f} |")
    failed = [r for r in rows if not r["verified"]]
    lines += ["", f"runs: {len(rows)}, verified: {len(rows) - len(failed)}"]
    lines += [f"- FAILED {r['engine']} {r['scale']} {r['night']}: {'; '.join(r['problems'])}" for r in failed]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    sys.exit(main())
