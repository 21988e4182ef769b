"""Night benchmark: the project's pipeline against four other clients, on the fake API over loopback.

    .venv/bin/python benchmarks/night.py [--scales M,M20,MP,L] [--rounds 3] [--out bench-results/]
    make bench                      # the same, with the defaults

Scales (generated with ``DataSpec(projects, sessions_per_project, seed=7, oddities=False)``):

    M    500 projects x 400 sessions (200,000 sessions, ~600,000 scenario ids), 0 ms latency
    M20  M with 20 ms added to every answer
    MP   M served DRF-paginated, page_size 100 (4 requests per project)
    L    2,500 projects x 400 sessions (1,000,000 sessions): memory growth of the pipeline

Clients, each measured in a fresh subprocess (so peak RSS is that client's alone):

    pipeline   ``cekura_sessions.run.night.run`` (what ``cekura-sessions run`` calls): a full night into
               an empty database, models and checks included, default concurrency (16)
    nochange   a second night of the same pipeline on the database the full night left, with the API
               serving exactly the same data
    rest_api   dlt's declarative ``rest_api`` source set up as a user would: projects as the parent,
               sessions as a child resolved by ``project_id``, merge on ``id``, parquet loader files;
               ``scenario_ids`` become dlt's nested table
    naive      sequential requests (one ``requests.Session``), pandas DataFrames, DuckDB insert from frames
    floor      what the hardware and the API allow: 16 worker threads on keep-alive ``http.client``
               connections, orjson, Arrow tables, one DuckDB insert per table, no dlt, no checks
    changed    (extra, not an issue target) a third night of the pipeline on the same database after the
               API switched to ``dataset.next_night(seed)``: statuses moved, lists shrunk/reordered/emptied,
               sessions deleted and added, one project emptied, so nearly every project's listing changed.
               Killed past 90 s (or past the memory cap) and then not run again in this invocation.

The scales are served by the benchmark's own light server (``benchmarks/light_server.py``: the fake
API's data pre-rendered, no Django; the DRF fake costs about 0.35 ms of CPU a request and renders every
page again), in its own server subprocess, started once per scale, so its memory and its encoding work
are never counted against a client. Each round runs the
clients one after another (pipeline, floor, nochange, rest_api, naive, changed) and rounds repeat that
order, so every client alternates with the others (A B A B); medians over rounds are reported. L runs
only the pipeline's nights and the floor (rest_api and naive at 1M sessions would take most of the
time budget; their ratios are measured at M, M20 and MP). A client run is killed past 600 s or past
6 GB of RSS (the machine is shared) and counted as failed.

Measured per client run: wall seconds of the whole process (spawn to exit, interpreter start and
imports included), wall seconds of the work alone (timed inside the child), peak RSS (``ru_maxrss``
of that child from ``os.wait4``), the DuckDB file size (file + WAL after the client exits), and the
server's request count. Every run's row counts are verified against the generated data (sessions and
scenario-id rows, counted in plain Python from the dataset in the server process); a mismatch fails
the benchmark (exit 1). Ratios against the floor are given for both wall measures; target verdicts
use the larger (stricter) of the two.

After the scales, a rate-limit run shows the pipeline's bounded concurrency and its whole-client backoff
on 429: the server answers a seeded random share of requests with 429 (Retry-After: 1) and the
requests it served are bucketed per second from its request log.

The throttled nights then show the pacing to Django REST framework's own throttle, on the fake API
(a DRF app, in its own subprocess): at 10/s, 300 requests a night (299 projects x 20 sessions, and
the projects list), and at 20/min, 45 requests (real minutes: about 2 a night). For each, as DRF
answers and with a gateway's RateLimit-* headers: a first night into a fresh database, then a second
night on it, paced from the throttle the first stored, on a fresh window. Each reports the API phase
(the server's first answer to its last) against DRF's floor W x (ceil(R / N) - 1) and the requests
refused (429), from the server's log. Last, both servers' CPU per request (process CPU time over 2,000
listings of 400 sessions).

Results: a table per scale on stdout, and ``results.json`` + ``results.md`` under ``--out``
(``bench-results/`` is git-ignored). Development: ``--projects 50`` shrinks M/M20/MP to 50 projects
(L to 5x that); ``--clients`` picks clients; ``--no-ratelimit`` skips the rate-limit run,
``--no-throttle`` the throttled nights (``--throttles 10/s:300`` picks them), ``--no-server-cost`` the
servers' CPU per request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

REPO = Path(__file__).resolve().parents[1]
API_KEY = "bench-key"
SEED = 7
CLIENT_TIMEOUT_S = 600  # a client run still going after this is killed and counted as failed
CHANGED_TIMEOUT_S = 90  # the changed night: 10x+ a full night at M; killed (and not run again) past this
CLIENT_RSS_CAP_MB = 6144  # the machine is shared (24 GB): a client past this is killed and counted as failed
ALL_CLIENTS = ("pipeline", "floor", "nochange", "rest_api", "naive", "changed")
PIPELINE_NIGHTS = ("pipeline", "nochange", "changed")
FLOOR_WORKERS = 16

# targets from the issue
TARGET_FULL_VS_FLOOR = 2.0
AIM_FULL_VS_FLOOR = 1.5
TARGET_VS_REST_API = 3.0
TARGET_NOCHANGE_VS_FLOOR = 1.2
TARGET_RSS_M_MB = 400.0
TARGET_RSS_L_VS_M = 1.5
TARGET_FILE_VS_FLOOR = 1.5
# a throttle-bound night's API phase (the server's first answer to its last) / DRF's floor
TARGET_THROTTLE_VS_FLOOR_FIRST = 1.15
TARGET_THROTTLE_VS_FLOOR_SECOND = 1.1
TARGET_THROTTLE_REFUSED = 0.05  # share of a first night's requests answered 429, at 10/s
TARGET_THROTTLE_REFUSED_FIRST_MINUTE = 4  # requests answered 429 on a first night at 20/min
TARGET_THROTTLE_REFUSED_SECOND = 1  # requests answered 429 on the second night (the throttle remembered)
TARGET_THROTTLE_REFUSED_HEADERS = 0.01  # share answered 429 with RateLimit-* headers
THROTTLES = "10/s:300,20/min:45"  # rate:requests a night
THROTTLE_HEADERS = ("none", "ratelimit")  # DRF's own answers; a gateway's RateLimit-* headers
SERVER_COST_REQUESTS = 2000


@dataclass(frozen=True)
class Scale:
    name: str
    projects: int
    sessions_per_project: int
    latency_ms: float = 0.0
    page_size: int | None = None
    clients: tuple[str, ...] = ALL_CLIENTS
    note: str = ""


def scales(projects_override: int | None) -> dict[str, Scale]:
    m = projects_override or 500
    big = 5 * m
    return {
        "M": Scale("M", m, 400, note="0 ms latency"),
        "M20": Scale("M20", m, 400, latency_ms=20.0, note="20 ms added to every answer"),
        "MP": Scale("MP", m, 400, page_size=100, note="paginated, page_size 100"),
        # L is about the pipeline's memory growth: rest_api and naive at 1M sessions would take most of
        # the time budget and say nothing new (their ratios are measured at M, M20 and MP)
        "L": Scale("L", big, 400, clients=("pipeline", "floor", "nochange", "changed"), note="memory growth"),
    }


# =====================================================================================================
# server subprocess: generates the data, serves it, answers control commands on stdin (JSON lines)
# =====================================================================================================


def serve_main(args: argparse.Namespace) -> int:
    """The server subprocess: `--server light` (benchmarks/light_server.py: pre-rendered pages, no
    Django; the scales and the rate-limit run) or `drf` (the fake API, a DRF app: the throttle)."""
    from cekura_sessions.fake.data import DataSpec, generate
    from cekura_sessions.fake.server import Faults

    started = time.perf_counter()
    dataset = generate(DataSpec(projects=args.projects, sessions_per_project=args.sessions_per_project, seed=SEED, oddities=False))
    generated_s = time.perf_counter() - started
    expected = expected_counts(dataset, args.page_size)

    if args.server == "drf":
        from cekura_sessions.fake.server import FakeCekuraApi

        api: Any = FakeCekuraApi(dataset, api_key=API_KEY, page_size=args.page_size, faults=Faults(latency_ms=args.latency_ms))
        log_lock = api._log_lock
    else:
        from light_server import LightApi

        api = LightApi(dataset, API_KEY, page_size=args.page_size, faults=Faults(latency_ms=args.latency_ms))
        api.served.prewarm(args.page_size)
        log_lock = api.log_lock
    api.start()
    _reply({"url": api.url, "expected": expected, "generate_seconds": round(generated_s, 2)})
    nights = {"base": (dataset, expected)}

    for line in sys.stdin:
        command = json.loads(line)
        kind = command["cmd"]
        if kind == "reset":
            api.reset_log()
            _reply({"ok": True})
        elif kind == "stats":
            with log_lock:
                log = list(api.requests_log)
            statuses: dict[str, int] = {}
            for record in log:
                statuses[str(record.status)] = statuses.get(str(record.status), 0) + 1
            in_flight = getattr(api, "in_flight", {"max": 0})
            reply: dict[str, Any] = {"requests": len(log), "statuses": statuses, "max_in_flight": in_flight["max"]}
            if command.get("log"):
                reply["log"] = [(r.at, str(r.status)) for r in log]
            _reply(reply)
        elif kind == "cpu":  # this process's CPU seconds, every thread's: the server's cost
            _reply({"cpu_seconds": time.process_time()})
        elif kind == "faults":
            # a fresh throttle window with every switch (the DRF fake), as a night a day later meets it
            api.faults = Faults(
                latency_ms=args.latency_ms,
                random_rate=command.get("random_rate", 0.0),
                random_kinds=tuple(command.get("random_kinds", ("429",))),
                random_seed=command.get("random_seed", 1),
                throttle=command.get("throttle"),
                throttle_headers=command.get("throttle_headers", "none"),
            )
            _reply({"ok": True})
        elif kind == "dataset":
            # "base": the generated data; "changed": the next night of it (fake_data.next_night)
            name = command["name"]
            if name not in nights:
                changed = dataset.next_night(seed=SEED + 1)
                nights[name] = (changed, expected_counts(changed, args.page_size))
            api.dataset = nights[name][0]
            _reply({"expected": nights[name][1]})
        elif kind == "quit":
            break
    api.stop()
    return 0


def expected_counts(dataset: Any, page_size: int | None = None) -> dict[str, int]:
    """Row counts and checksums computed in plain Python from the generated dataset, and the
    fewest requests a night can make: the projects list and, per listed project, the pages its
    sessions fill at the server's page size (`page_size`; None: one plain array each)."""
    sessions = scenario_rows = id_sum = value_sum = 0
    for rows in dataset.sessions.values():
        for session in rows:
            sessions += 1
            id_sum += session["id"]
            ids = session.get("scenario_ids") or []
            scenario_rows += len(ids)
            value_sum += sum(ids)
    listed = [p["id"] for p in dataset.projects if not p.get("is_deleted")]
    pages = [max(1, -(-len(dataset.sessions.get(pid, [])) // page_size)) if page_size else 1 for pid in listed]
    return {
        "projects": len(dataset.projects),
        "sessions": sessions,
        "scenario_rows": scenario_rows,
        "session_id_sum": id_sum,
        "scenario_value_sum": value_sum,
        "min_requests": 1 + sum(pages),
    }


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class Server:
    """Handle on a server subprocess (started once per scale)."""

    def __init__(self, scale: Scale, log_path: Path, server: str = "light") -> None:
        command = [sys.executable, __file__, "--serve", "--server", server, "--projects", str(scale.projects),
                   "--sessions-per-project", str(scale.sessions_per_project), "--latency-ms", str(scale.latency_ms)]
        if scale.page_size:
            command += ["--page-size", str(scale.page_size)]
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, env=_child_env())
        hello = self._read()
        self.url: str = hello["url"]
        self.expected: dict[str, int] = hello["expected"]
        self.generate_seconds: float = hello["generate_seconds"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake API server died (see {self._log.name})")
        return json.loads(line)

    def ask(self, cmd: str, **kwargs: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.ask("quit")
        except (OSError, RuntimeError, ValueError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# =====================================================================================================
# clients: each runs in its own subprocess (`--client NAME`) and writes its result as JSON
# =====================================================================================================


def client_main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    result: dict[str, Any] = {"client": args.client}
    runner = {
        "pipeline": run_pipeline,
        "nochange": run_pipeline,
        "changed": run_pipeline,
        "rest_api": run_rest_api,
        "naive": run_naive,
        "floor": run_floor,
    }[args.client]
    runner(args, result)
    result["child_seconds"] = time.perf_counter() - started
    Path(args.result).write_text(json.dumps(result))
    return 0


def run_pipeline(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The project's nightly run, as `cekura-sessions run` does it (logging set up as the CLI does)."""
    imported = time.perf_counter()
    import dlt
    from cekura_sessions.logs import setup_logging
    from cekura_sessions.models import checks, runner
    from cekura_sessions.run import bookkeeping
    from cekura_sessions.run import night as pipeline

    setup_logging("INFO", "text")
    stages: dict[str, float] = {}
    _time_stages(stages, dlt, bookkeeping, runner, checks)
    config = pipeline.RunConfig(
        db=args.db,  # a DuckDB file or a postgresql:// URL (benchmarks/engines.py)
        api_key=API_KEY,
        base_url=args.url,
        pipelines_dir=args.pipelines_dir,
        concurrency=args.concurrency,
        # the listings' night, what these scales measure; the light server serves no details
        details=False,
        # the changed night empties a project, which the guard against sudden removals would hold
        # (extract/removals.py): measured is a night that applies them; the others remove nothing
        accept_removals=True,
    )
    result["import_seconds"] = time.perf_counter() - imported
    started = time.perf_counter()
    outcome = pipeline.run(config)
    result["work_seconds"] = time.perf_counter() - started
    report = outcome.report
    result["stages"] = stages
    result["exit_code"] = outcome.exit_code
    result["message"] = outcome.message
    result["report"] = {
        "projects_ok": len(report.projects_ok),
        "projects_unchanged": len(report.projects_unchanged),
        "projects_failed": len(report.projects_failed),
        "sessions_listed": report.sessions_listed,
        "sessions_written": report.sessions_written,
        "requests": report.stats.requests,
        "retries": report.stats.retries,
    }


def _time_stages(stages: dict[str, float], dlt: Any, history: Any, runner: Any, checks: Any) -> None:
    """Wrap the run's stages with timers (a few perf_counter calls per stage; the code is unchanged)."""

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:  # the pipeline's code moved: time what still exists
            return

        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                stages[label] = stages.get(label, 0.0) + time.perf_counter() - t0

        wrapper.__wrapped_original__ = original  # type: ignore[attr-defined]
        setattr(owner, name, wrapper)

    timed(dlt.Pipeline, "extract", "extract (fetch + arrow + parquet)")
    timed(dlt.Pipeline, "normalize", "normalize")
    timed(dlt.Pipeline, "load", "load")
    timed(history, "record_changes", "history")
    timed(runner, "build_models", "models")
    timed(checks, "run_checks", "checks")


def run_rest_api(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """dlt's declarative REST API source, configured the way its documentation shows."""
    imported = time.perf_counter()
    import dlt
    from cekura_sessions.api.endpoints import (
        API_KEY_HEADER,
        PROJECTS_PATH,
        SESSIONS_PATH,
    )
    from dlt.sources.rest_api import rest_api_source

    sessions_endpoint: dict[str, Any] = {
        "path": SESSIONS_PATH.lstrip("/"),
        "params": {"project_id": "{resources.projects.id}"},
    }
    if args.paged:
        sessions_endpoint["paginator"] = {"type": "json_link", "next_url_path": "next"}
        sessions_endpoint["data_selector"] = "results"
    else:
        sessions_endpoint["paginator"] = "single_page"
    source = rest_api_source(
        {
            "client": {
                "base_url": args.url + "/",
                "auth": {"type": "api_key", "name": API_KEY_HEADER, "api_key": API_KEY, "location": "header"},
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                {"name": "projects", "endpoint": {"path": PROJECTS_PATH.lstrip("/"), "paginator": "single_page"}},
                {"name": "scenario_improvement_sessions", "endpoint": sessions_endpoint},
            ],
        },
        name="cekura_rest_api",
    )
    pipe = dlt.pipeline(
        pipeline_name="bench_rest_api",
        destination=dlt.destinations.duckdb(args.db),
        dataset_name="cekura_raw",
        pipelines_dir=args.pipelines_dir,
    )
    result["import_seconds"] = time.perf_counter() - imported
    started = time.perf_counter()
    info = pipe.run(source, loader_file_format="parquet")
    result["work_seconds"] = time.perf_counter() - started
    result["exit_code"] = 1 if info.has_failed_jobs else 0


def run_naive(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """What a first script would do: one request after another, pandas, DuckDB from the frames."""
    imported = time.perf_counter()
    import duckdb
    import pandas as pd
    import requests
    from cekura_sessions.api.endpoints import (
        API_KEY_HEADER,
        PROJECTS_PATH,
        SESSIONS_PATH,
    )

    result["import_seconds"] = time.perf_counter() - imported
    started = time.perf_counter()
    http = requests.Session()
    http.headers[API_KEY_HEADER] = API_KEY
    response = http.get(args.url + PROJECTS_PATH)
    response.raise_for_status()
    projects = response.json()
    frames = []
    for project in projects:
        response = http.get(args.url + SESSIONS_PATH, params={"project_id": project["id"]})
        response.raise_for_status()
        body = response.json()
        rows = body
        if isinstance(body, dict):
            rows = list(body["results"])
            while body["next"]:
                response = http.get(body["next"])
                response.raise_for_status()
                body = response.json()
                rows.extend(body["results"])
        frame = pd.DataFrame(rows)
        frame["project_id"] = project["id"]
        frames.append(frame)
    projects_df = pd.DataFrame(projects)[["id", "name", "timezone", "is_deleted", "created_at", "updated_at"]]
    sessions_df = pd.concat(frames, ignore_index=True)
    scenario_df = sessions_df[["id", "project_id", "scenario_ids"]].explode("scenario_ids").dropna(subset=["scenario_ids"])
    scenario_df = scenario_df.rename(columns={"id": "session_id", "scenario_ids": "value"})
    scenario_df["position"] = scenario_df.groupby("session_id").cumcount()
    scenario_df["value"] = scenario_df["value"].astype("int64")
    sessions_df = sessions_df.drop(columns=["scenario_ids"])
    con = duckdb.connect(args.db)
    con.execute("create table projects as select * from projects_df")
    con.execute("create table sessions as select * from sessions_df")
    con.execute("create table scenario_ids as select * from scenario_df")
    con.close()
    result["work_seconds"] = time.perf_counter() - started
    result["exit_code"] = 0


def floor_getter(url: str) -> Any:
    """`get(path) -> parsed JSON` as the floor fetches: one keep-alive http.client connection per
    thread, orjson. Shared with profile_night.py."""
    import http.client
    from urllib.parse import urlsplit

    import orjson
    from cekura_sessions.api.endpoints import API_KEY_HEADER

    parts = urlsplit(url)
    headers = {API_KEY_HEADER: API_KEY, "Accept": "application/json"}
    local = threading.local()

    def get(path: str) -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status} on {path}")
        return orjson.loads(body)

    return get


def floor_listing_rows(get: Any, project_id: int) -> list[Any]:
    """One project's rows, following `next` when the API pages."""
    from urllib.parse import urlsplit

    from cekura_sessions.api.endpoints import SESSIONS_PATH

    body = get(f"{SESSIONS_PATH}?project_id={project_id}")
    if not isinstance(body, dict):
        return body
    rows = list(body["results"])
    while body["next"]:
        nxt = urlsplit(body["next"])
        body = get(f"{nxt.path}?{nxt.query}")
        rows.extend(body["results"])
    return rows


def run_floor(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Concurrent fetch (16 workers, keep-alive), orjson, Arrow, one DuckDB insert per table. No dlt."""
    imported = time.perf_counter()
    import http.client  # noqa: F401  (floor_getter's, imported here so import_seconds counts it)
    from concurrent.futures import ThreadPoolExecutor

    import duckdb
    import numpy as np
    import orjson  # noqa: F401  (as above)
    import pyarrow as pa
    import pyarrow.compute as pc
    from cekura_sessions.api.endpoints import PROJECTS_PATH

    result["import_seconds"] = time.perf_counter() - imported
    started = time.perf_counter()
    sessions_schema = pa.schema([
        ("id", pa.int64()), ("title", pa.string()), ("project", pa.int64()), ("scenario_ids", pa.list_(pa.int64())),
        ("status", pa.string()), ("created_at", pa.string()), ("updated_at", pa.string()), ("message_count", pa.int64()),
    ])

    get = floor_getter(args.url)

    def fetch(project_id: int) -> pa.Table:
        table = pa.Table.from_pylist(floor_listing_rows(get, project_id), schema=sessions_schema)
        return table.append_column("project_id", pa.array(np.full(len(table), project_id, dtype=np.int64)))

    projects = get(PROJECTS_PATH)
    with ThreadPoolExecutor(max_workers=FLOOR_WORKERS) as pool:
        tables = list(pool.map(fetch, [p["id"] for p in projects]))
    sessions = pa.concat_tables(tables).combine_chunks()
    ids = sessions.column("scenario_ids").chunk(0)
    parents = pc.list_parent_indices(ids)
    offsets = ids.offsets.to_numpy()
    lengths = np.diff(offsets)
    position = np.arange(len(parents), dtype=np.int64) - np.repeat(offsets[:-1], lengths).astype(np.int64)
    scenario_ids = pa.table({
        "session_id": pc.take(sessions.column("id"), parents),
        "project_id": pc.take(sessions.column("project_id"), parents),
        "position": position,
        "value": pc.list_flatten(ids),
    })
    sessions = sessions.drop_columns(["scenario_ids"])
    projects_table = pa.table({
        "id": [p["id"] for p in projects],
        "name": [p.get("name") for p in projects],
        "organization_id": [(p.get("organization") or {}).get("id") for p in projects],
        "organization_name": [(p.get("organization") or {}).get("name") for p in projects],
        "timezone": [p.get("timezone") for p in projects],
        "is_deleted": [bool(p.get("is_deleted")) for p in projects],
        "created_at": [p.get("created_at") for p in projects],
        "updated_at": [p.get("updated_at") for p in projects],
    })
    con = duckdb.connect(args.db)
    con.execute("create table projects as select * from projects_table")
    con.execute("create table sessions as select * from sessions")
    con.execute("create table scenario_ids as select * from scenario_ids")
    con.close()
    result["work_seconds"] = time.perf_counter() - started
    result["exit_code"] = 0


# =====================================================================================================
# measuring one client run from the parent
# =====================================================================================================

# where each client leaves sessions and scenario-id rows
TABLES = {
    "pipeline": ("cekura_raw.scenario_improvement_sessions", "cekura_raw.scenario_improvement_sessions__scenario_ids", "session_id"),
    "nochange": ("cekura_raw.scenario_improvement_sessions", "cekura_raw.scenario_improvement_sessions__scenario_ids", "session_id"),
    "changed": ("cekura_raw.scenario_improvement_sessions", "cekura_raw.scenario_improvement_sessions__scenario_ids", "session_id"),
    "rest_api": ("cekura_raw.scenario_improvement_sessions", "cekura_raw.scenario_improvement_sessions__scenario_ids", None),
    "naive": ("sessions", "scenario_ids", "session_id"),
    "floor": ("sessions", "scenario_ids", "session_id"),
}


@dataclass
class Measurement:
    scale: str
    client: str
    round: int
    wall_s: float  # process spawn to exit
    work_s: float  # timed inside the child, imports excluded
    import_s: float
    peak_rss_mb: float
    db_mb: float
    requests: int
    max_in_flight: int
    exit_code: int
    verified: bool
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    killed: str = ""  # why the parent killed it (time or memory cap), else empty


def measure(scale: Scale, client: str, rnd: int, server: Server, work: Path, db: Path, pipelines_dir: Path,
            concurrency: int | None = None, expected: dict[str, int] | None = None) -> Measurement:
    result_path = work / f"{client}-r{rnd}.json"
    log_path = work / f"{client}-r{rnd}.log"
    command = [sys.executable, __file__, "--client", client, "--url", server.url, "--db", str(db),
               "--pipelines-dir", str(pipelines_dir), "--result", str(result_path)]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    if scale.page_size:
        command.append("--paged")
    server.ask("reset")
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=work)
        timeout = CHANGED_TIMEOUT_S if client == "changed" else CLIENT_TIMEOUT_S
        status, rusage, killed = _wait(proc, timeout, CLIENT_RSS_CAP_MB)
        wall = time.perf_counter() - started
    stats = server.ask("stats")
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    problems: list[str] = []
    if killed:
        problems.append(killed)
    elif status != 0:
        problems.append(f"process exit status {status} (see {log_path})")
    exit_code = result.get("exit_code", -1)
    if exit_code != 0:
        problems.append(f"client exit code {exit_code}: {result.get('message', '')}")
    counts = {}
    if db.exists():
        counts, count_problems = verify(client, db, expected or server.expected)
        problems += count_problems
    else:
        problems.append("no database file")
    return Measurement(
        scale=scale.name, client=client, round=rnd, wall_s=wall,
        work_s=result.get("work_seconds", float("nan")), import_s=result.get("import_seconds", float("nan")),
        peak_rss_mb=rusage.ru_maxrss / 1024, db_mb=_db_size(db) / 2**20, requests=stats["requests"],
        max_in_flight=stats["max_in_flight"], exit_code=exit_code, verified=not problems, counts=counts,
        problems=problems, stages=result.get("stages", {}), report=result.get("report", {}), killed=killed,
    )


def _wait(proc: subprocess.Popen, timeout_s: float, rss_cap_mb: float) -> tuple[int, Any, str]:
    """Wait for this child alone; its rusage (ru_maxrss = its own peak RSS) comes with it.
    A child past the time or memory cap is killed; the third value then says why."""
    deadline = time.monotonic() + timeout_s
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    killed = ""
    polls = 0
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, rusage, killed
        polls += 1
        if not killed and polls % 10 == 0:
            try:
                with open(f"/proc/{proc.pid}/statm") as f:
                    rss_mb = int(f.read().split()[1]) * page_mb
            except (OSError, ValueError, IndexError):
                rss_mb = 0.0
            if rss_mb > rss_cap_mb:
                killed = f"killed by the benchmark: RSS {rss_mb:,.0f} MB over the {rss_cap_mb:,.0f} MB cap"
            elif time.monotonic() > deadline:
                killed = f"killed by the benchmark: still running after {timeout_s:.0f} s"
            if killed:
                proc.kill()
        time.sleep(0.005)


def verify(client: str, db: Path, expected: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    import duckdb

    sessions_table, ids_table, session_column = TABLES[client]
    con = duckdb.connect(str(db), read_only=True)
    try:
        counts = {
            "sessions": con.execute(f"select count(*) from {sessions_table}").fetchone()[0],
            "distinct_sessions": con.execute(f"select count(distinct id) from {sessions_table}").fetchone()[0],
            "session_id_sum": int(con.execute(f"select sum(id) from {sessions_table}").fetchone()[0] or 0),
            "scenario_rows": con.execute(f"select count(*) from {ids_table}").fetchone()[0],
            "scenario_value_sum": int(con.execute(f"select sum(value) from {ids_table}").fetchone()[0] or 0),
        }
        if client in PIPELINE_NIGHTS:
            counts["analytics_sessions"] = con.execute("select count(*) from analytics.sessions").fetchone()[0]
            counts["analytics_session_scenarios"] = con.execute("select count(*) from analytics.session_scenarios").fetchone()[0]
    finally:
        con.close()
    want = {
        "sessions": expected["sessions"], "distinct_sessions": expected["sessions"],
        "session_id_sum": expected["session_id_sum"], "scenario_rows": expected["scenario_rows"],
        "scenario_value_sum": expected["scenario_value_sum"],
        "analytics_sessions": expected["sessions"], "analytics_session_scenarios": expected["scenario_rows"],
    }
    problems = [f"{name}: {value} != expected {want[name]}" for name, value in counts.items() if value != want[name]]
    return counts, problems


def _db_size(db: Path) -> int:
    size = db.stat().st_size if db.exists() else 0
    wal = db.with_name(db.name + ".wal")
    return size + (wal.stat().st_size if wal.exists() else 0)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env.pop("CEKURA_TEST_HOOK", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# =====================================================================================================
# a scale: server once, clients in alternation for N rounds
# =====================================================================================================


# clients that were killed (time/memory cap) are not run again in this invocation: {client: why}
GIVEN_UP: dict[str, str] = {}


def run_scale(scale: Scale, rounds: int, clients: tuple[str, ...], root: Path, say: Any) -> dict[str, Any]:
    work = root / scale.name
    work.mkdir(parents=True)
    say(f"\n== {scale.name}: {scale.projects} projects x {scale.sessions_per_project} sessions, {scale.note}; "
        f"{rounds} round(s) of {', '.join(clients)}")
    server = Server(scale, work / "server.log")
    say(f"   server {server.url}: {server.expected['sessions']:,} sessions, {server.expected['scenario_rows']:,} "
        f"scenario ids (generated in {server.generate_seconds:.1f} s)")
    measurements: list[Measurement] = []
    try:
        for rnd in range(1, rounds + 1):
            night_dir = work / f"r{rnd}"
            night_dir.mkdir()
            for client in clients:
                if client in ("nochange", "changed") and "pipeline" not in clients:
                    continue
                if client in GIVEN_UP:
                    continue
                if client in PIPELINE_NIGHTS:
                    db, pipelines_dir = night_dir / "pipeline.duckdb", night_dir / "pipeline-dlt"
                else:
                    db, pipelines_dir = night_dir / f"{client}.duckdb", night_dir / f"{client}-dlt"
                expected = server.expected
                if client == "changed":  # the API now serves the next night's data (fake_data.next_night)
                    expected = server.ask("dataset", name="changed")["expected"]
                m = measure(scale, client, rnd, server, night_dir, db, pipelines_dir, expected=expected)
                if client == "changed":
                    server.ask("dataset", name="base")
                if m.killed:
                    GIVEN_UP[client] = f"{scale.name} r{rnd}: {m.killed}"
                measurements.append(m)
                flag = "ok" if m.verified else "FAILED: " + "; ".join(m.problems)
                say(f"   r{rnd} {client:<9} wall {m.wall_s:7.2f} s  work {m.work_s:7.2f} s  rss {m.peak_rss_mb:7.0f} MB  "
                    f"db {m.db_mb:6.1f} MB  {m.requests:5d} req  {flag}")
            for client in clients:  # keep the disk small: the files are measured already
                if client not in PIPELINE_NIGHTS:
                    for path in night_dir.glob(f"{client}.duckdb*"):
                        path.unlink()
                    shutil.rmtree(night_dir / f"{client}-dlt", ignore_errors=True)
    finally:
        server.close()
    return {"scale": asdict(scale), "expected": server.expected, "measurements": [asdict(m) for m in measurements]}


def summarize(scale_result: dict[str, Any]) -> dict[str, Any]:
    """Medians per client and ratios against the floor's medians."""
    expected = scale_result["expected"]
    by_client: dict[str, list[dict[str, Any]]] = {}
    for m in scale_result["measurements"]:
        by_client.setdefault(m["client"], []).append(m)
    rows: dict[str, dict[str, Any]] = {}
    for client, ms in by_client.items():
        stage_names = sorted({name for m in ms for name in m["stages"]})
        rows[client] = {
            "runs": len(ms),
            "verified": all(m["verified"] for m in ms),
            "wall_s": statistics.median(m["wall_s"] for m in ms),
            "work_s": statistics.median(m["work_s"] for m in ms),
            "import_s": statistics.median(m["import_s"] for m in ms),
            "peak_rss_mb": statistics.median(m["peak_rss_mb"] for m in ms),
            "db_mb": statistics.median(m["db_mb"] for m in ms),
            "requests": statistics.median(m["requests"] for m in ms),
            "max_in_flight": max(m["max_in_flight"] for m in ms),
            "stages": {name: statistics.median(m["stages"].get(name, 0.0) for m in ms) for name in stage_names},
            "walls": [round(m["wall_s"], 2) for m in ms],
            "killed": [f"r{m['round']}: {m['killed']}" for m in ms if m.get("killed")],
            "problems": sorted({p for m in ms for p in m["problems"]}),
        }
        rows[client]["sessions_per_s"] = expected["sessions"] / rows[client]["wall_s"]
    floor = rows.get("floor")
    if floor:
        for row in rows.values():
            row["wall_vs_floor"] = row["wall_s"] / floor["wall_s"]
            row["work_vs_floor"] = row["work_s"] / floor["work_s"]
            row["rss_vs_floor"] = row["peak_rss_mb"] / floor["peak_rss_mb"]
            row["db_vs_floor"] = row["db_mb"] / floor["db_mb"] if floor["db_mb"] else float("nan")
    return rows


def verdicts(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of the issue, with the measured value (stricter of the two wall measures)."""
    out: list[dict[str, Any]] = []

    def add(scale: str, target: str, value: float, limit: float, passed: bool, unit: str = "x") -> None:
        out.append({"scale": scale, "target": target, "value": value, "limit": limit, "unit": unit, "passed": passed})

    for name, rows in summaries.items():
        pipe, floor, nochange, rest = rows.get("pipeline"), rows.get("floor"), rows.get("nochange"), rows.get("rest_api")
        if pipe and floor and name != "L":
            ratio = max(pipe["wall_vs_floor"], pipe["work_vs_floor"])
            add(name, f"full night <= {TARGET_FULL_VS_FLOOR}x floor (aim {AIM_FULL_VS_FLOOR}x)", ratio, TARGET_FULL_VS_FLOOR,
                ratio <= TARGET_FULL_VS_FLOOR)
        if pipe and rest:
            speedup = min(rest["wall_s"] / pipe["wall_s"], rest["work_s"] / pipe["work_s"])
            add(name, f"full night >= {TARGET_VS_REST_API}x faster than dlt rest_api", speedup, TARGET_VS_REST_API,
                speedup >= TARGET_VS_REST_API)
        if nochange and floor and name != "L":
            ratio = max(nochange["wall_vs_floor"], nochange["work_vs_floor"])
            add(name, f"no-change night <= {TARGET_NOCHANGE_VS_FLOOR}x floor", ratio, TARGET_NOCHANGE_VS_FLOOR,
                ratio <= TARGET_NOCHANGE_VS_FLOOR)
        if name == "M" and pipe:
            rss = max(r["peak_rss_mb"] for c, r in rows.items() if c in ("pipeline", "nochange"))
            add(name, f"peak RSS <= {TARGET_RSS_M_MB:.0f} MB", rss, TARGET_RSS_M_MB, rss <= TARGET_RSS_M_MB, "MB")
        if name == "M" and nochange and floor:
            ratio = nochange["db_mb"] / floor["db_mb"]
            add(name, f"DuckDB file after two nights <= {TARGET_FILE_VS_FLOOR}x floor's", ratio, TARGET_FILE_VS_FLOOR,
                ratio <= TARGET_FILE_VS_FLOOR)
    if "L" in summaries and "M" in summaries and "pipeline" in summaries["L"] and "pipeline" in summaries["M"]:
        l_rss = max(r["peak_rss_mb"] for c, r in summaries["L"].items() if c in ("pipeline", "nochange"))
        m_rss = max(r["peak_rss_mb"] for c, r in summaries["M"].items() if c in ("pipeline", "nochange"))
        add("L", f"peak RSS at L <= {TARGET_RSS_L_VS_M}x M's", l_rss / m_rss, TARGET_RSS_L_VS_M, l_rss / m_rss <= TARGET_RSS_L_VS_M)
    for name, rows in summaries.items():
        changed = rows.get("changed")
        if changed:
            add(name, "extra (not an issue target): a changed night (next_night data, every live project changed) "
                f"finishes within {CHANGED_TIMEOUT_S} s and verifies", float(changed["wall_s"]), float(CHANGED_TIMEOUT_S), changed["verified"], "s")
    return out


# =====================================================================================================
# rate limiting: bounded concurrency and whole-client backoff on 429
# =====================================================================================================


def run_ratelimit(root: Path, projects: int, say: Any) -> dict[str, Any]:
    scale = Scale("RL", projects, 400, latency_ms=20.0, page_size=100, clients=("pipeline",),
                  note="paginated, 20 ms, 1% of answers 429 (Retry-After: 1)")
    work = root / "ratelimit"
    work.mkdir(parents=True)
    say(f"\n== rate limit: {projects} projects x 400 sessions, {scale.note}")
    server = Server(scale, work / "server.log")
    runs = []
    try:
        for concurrency, rate in ((8, 0.0), (8, 0.01), (2, 0.01)):
            server.ask("faults", random_rate=rate, random_kinds=["429"], random_seed=3)
            run_dir = work / f"c{concurrency}-rate{rate}"
            run_dir.mkdir()
            m = measure(scale, "pipeline", 1, server, run_dir, run_dir / "p.duckdb", run_dir / "dlt", concurrency=concurrency)
            stats = server.ask("stats", log=True)
            log = stats["log"]
            t0 = min((at for at, _ in log), default=0.0)
            buckets: dict[int, dict[str, int]] = {0: {"requests": 0, "429": 0}}
            for at, status in log:
                bucket = buckets.setdefault(int(at - t0), {"requests": 0, "429": 0})
                bucket["requests"] += 1
                bucket["429"] += status == "429"
            timeline = [{"second": s, **buckets.get(s, {"requests": 0, "429": 0})} for s in range(max(buckets) + 1)]
            run = {"concurrency": concurrency, "rate_429": rate, "wall_s": m.wall_s, "requests": stats["requests"],
                   "statuses": stats["statuses"], "max_in_flight": stats["max_in_flight"], "verified": m.verified,
                   "retries": m.report.get("retries"), "problems": m.problems, "timeline": timeline}
            runs.append(run)
            say(f"   concurrency {concurrency}, 429 share {rate:.0%}: {m.wall_s:.1f} s, {stats['requests']} requests "
                f"({stats['statuses'].get('429', 0)} x 429, {run['retries']} client retries), max in flight "
                f"{stats['max_in_flight']}, {'ok' if m.verified else 'FAILED: ' + '; '.join(m.problems)}")
            say("   req/s per second: " + " ".join(f"{b['requests']}" + (f"({b['429']}x429)" if b["429"] else "") for b in timeline))
    finally:
        server.close()
    return {"scale": asdict(scale), "runs": runs}


# =====================================================================================================
# throttling: pacing to DRF's sliding-window throttle (the fake API, a DRF app: Retry-After rounded up)
# =====================================================================================================


def drf_floor(accepted: int, limit: int, window_s: float) -> float:
    """DRF's own floor: N at once each window, so R requests need W x (ceil(R / N) - 1)."""
    return window_s * (-(-accepted // limit) - 1)


def run_throttle(root: Path, rate: str, requests: int, say: Any) -> dict[str, Any]:
    """Nights of `requests` requests (the projects list and one page per listing) against the DRF
    fake throttled at `rate`: for each header style, a first night into a fresh database (the key
    meets the throttle for the first time) and a second night on it, paced from the throttle the
    first one stored, on a fresh window (as a day later)."""
    from cekura_sessions.fake.throttle import parse_rate

    limit, window_s = parse_rate(rate)
    scale = Scale("T", requests - 1, 20, clients=("pipeline",), note=f"DRF throttle {rate}, 0 ms")
    work = root / f"throttle-{rate.replace('/', '-')}"
    work.mkdir(parents=True)
    say(f"\n== throttle {rate}: {requests} requests a night ({scale.projects} projects x 20 sessions and the projects list), "
        f"DRF fake; floor W x (ceil(R/N) - 1)")
    server = Server(scale, work / "server.log", server="drf")
    runs = []
    try:
        for headers in THROTTLE_HEADERS:
            run_dir = work / headers
            run_dir.mkdir()
            for night in ("first", "second"):
                server.ask("faults", throttle=rate, throttle_headers=headers)  # a fresh window
                m = measure(scale, "pipeline", 1 if night == "first" else 2, server, run_dir, run_dir / "p.duckdb",
                            run_dir / "dlt")
                stats = server.ask("stats", log=True)
                refused = stats["statuses"].get("429", 0)
                accepted = stats["requests"] - refused
                floor_s = drf_floor(accepted, limit, window_s)
                times = [at for at, _ in stats["log"]]
                api_s = max(times) - min(times) if times else float("nan")  # the server's first answer to its last
                run = {"headers": headers, "night": night, "wall_s": m.wall_s, "work_s": m.work_s, "api_s": api_s,
                       "floor_s": floor_s, "api_vs_floor": api_s / floor_s if floor_s else float("nan"),
                       "requests": stats["requests"], "refused": refused, "refused_share": refused / stats["requests"],
                       "verified": m.verified, "problems": m.problems}
                runs.append(run)
                say(f"   headers {headers:<9} {night} night: API phase {api_s:6.1f} s = {run['api_vs_floor']:.3f}x the floor's "
                    f"{floor_s:.0f} s (night {m.wall_s:.1f} s); {refused} of {stats['requests']} requests refused "
                    f"({run['refused_share']:.1%}); {'ok' if m.verified else 'FAILED: ' + '; '.join(m.problems)}")
    finally:
        server.close()
    return {"rate": rate, "requests": requests, "limit": limit, "window_s": window_s, "runs": runs}


def throttle_verdicts(throttle: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's targets: the API phase within 1.15x DRF's floor on a first night, 1.1x on the
    second; refused: <= 5% at 10/s, <= 4 at 20/min (first night), <= 1 on the second, <= 1% with
    RateLimit-* headers."""
    out = []
    per_second = throttle["window_s"] <= 1
    for run in throttle["runs"]:
        scale = f"T ({throttle['rate']}, headers {run['headers']}, {run['night']} night)"
        first = run["night"] == "first"
        limit_x = TARGET_THROTTLE_VS_FLOOR_FIRST if first else TARGET_THROTTLE_VS_FLOOR_SECOND
        out.append({"scale": scale, "target": f"API phase <= {limit_x}x DRF's floor", "value": run["api_vs_floor"],
                    "limit": limit_x, "unit": "x", "passed": run["api_vs_floor"] <= limit_x and run["verified"]})
        if run["headers"] != "none":
            share = TARGET_THROTTLE_REFUSED_HEADERS
            out.append({"scale": scale, "target": f"refused (429) <= {share:.0%} of requests",
                        "value": run["refused_share"] * 100, "limit": share * 100, "unit": "%",
                        "passed": run["refused_share"] <= share})
        if not first:
            out.append({"scale": scale, "target": f"refused (429) <= {TARGET_THROTTLE_REFUSED_SECOND}",
                        "value": run["refused"], "limit": TARGET_THROTTLE_REFUSED_SECOND, "unit": "n",
                        "passed": run["refused"] <= TARGET_THROTTLE_REFUSED_SECOND})
        elif per_second:
            out.append({"scale": scale, "target": f"refused (429) <= {TARGET_THROTTLE_REFUSED:.0%} of requests",
                        "value": run["refused_share"] * 100, "limit": TARGET_THROTTLE_REFUSED * 100, "unit": "%",
                        "passed": run["refused_share"] <= TARGET_THROTTLE_REFUSED})
        else:
            out.append({"scale": scale, "target": f"refused (429) <= {TARGET_THROTTLE_REFUSED_FIRST_MINUTE}",
                        "value": run["refused"], "limit": TARGET_THROTTLE_REFUSED_FIRST_MINUTE, "unit": "n",
                        "passed": run["refused"] <= TARGET_THROTTLE_REFUSED_FIRST_MINUTE})
    return out


# =====================================================================================================
# the servers' own cost: CPU seconds per request, the DRF fake against the light server
# =====================================================================================================


def server_costs(root: Path, requests: int, say: Any) -> dict[str, Any]:
    """Each server's process CPU time over `requests` unpaged listings of 400 sessions (4 client
    threads on keep-alive connections), per request."""
    from concurrent.futures import ThreadPoolExecutor

    from cekura_sessions.api.endpoints import SESSIONS_PATH

    work = root / "server-cost"
    work.mkdir(parents=True)
    scale = Scale("C", 50, 400, clients=())
    out: dict[str, Any] = {"requests": requests}
    for kind in ("light", "drf"):
        server = Server(scale, work / f"{kind}.log", server=kind)
        try:
            get = floor_getter(server.url)
            project_ids = [p["id"] for p in get("/user/v1/projects/")]
            paths = [f"{SESSIONS_PATH}?project_id={project_ids[i % len(project_ids)]}" for i in range(requests)]
            for path in paths[:len(project_ids)]:  # warm: every body rendered (the light server) once
                get(path)
            before = server.ask("cpu")["cpu_seconds"]
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(get, paths))
            wall = time.perf_counter() - started
            cpu = server.ask("cpu")["cpu_seconds"] - before
        finally:
            server.close()
        out[kind] = {"cpu_ms_per_request": cpu / requests * 1000, "wall_s": wall}
        say(f"   {kind} server: {cpu / requests * 1000:.3f} ms CPU per request ({requests} listings of 400 sessions, "
            f"{wall:.1f} s)")
    return out


# =====================================================================================================
# reporting
# =====================================================================================================

CLIENT_LABELS = {
    "pipeline": "pipeline, full night",
    "nochange": "pipeline, no-change night",
    "rest_api": "dlt rest_api",
    "naive": "naive (requests+pandas)",
    "changed": "pipeline, changed night (3rd)",
    "floor": "floor (16 workers, Arrow)",
}


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    import dlt
    import duckdb
    import pyarrow

    return {
        "nproc": os.cpu_count(), "cpu": model, "ram_gb": round(mem_kb / 2**20, 1), "python": platform.python_version(),
        "dlt": dlt.__version__, "duckdb": duckdb.__version__, "pyarrow": pyarrow.__version__,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def table_markdown(name: str, scale: dict[str, Any], expected: dict[str, int], rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"### {name}: {scale['projects']} projects x {scale['sessions_per_project']} sessions, {scale['note']} "
        f"({expected['sessions']:,} sessions, {expected['scenario_rows']:,} scenario-id rows)",
        "",
        "| client | runs | wall s | work s | sessions/s | peak RSS MB | DuckDB MB | wall / floor | work / floor | RSS / floor | file / floor | requests (fewest possible) | rows verified |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for client in ALL_CLIENTS:
        if client not in rows:
            continue
        r = rows[client]
        lines.append(
            f"| {CLIENT_LABELS[client]} | {r['runs']} | {r['wall_s']:.2f} | {r['work_s']:.2f} | {r['sessions_per_s']:,.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['db_mb']:.1f} | {_x(r.get('wall_vs_floor'))} | {_x(r.get('work_vs_floor'))} | "
            f"{_x(r.get('rss_vs_floor'))} | {_x(r.get('db_vs_floor'))} | {r['requests']:.0f} ({expected.get('min_requests', '?')}) | "
            f"{'yes' if r['verified'] else 'NO'} |"
        )
    for client in ALL_CLIENTS:
        if client in rows and not rows[client]["verified"]:
            lines += ["", f"**{CLIENT_LABELS[client]} FAILED**: " + "; ".join(rows[client]["problems"])]
    for client in PIPELINE_NIGHTS:
        stages = rows.get(client, {}).get("stages")
        if stages:
            ordered = sorted(stages.items(), key=lambda kv: STAGE_ORDER.index(kv[0]) if kv[0] in STAGE_ORDER else 99)
            lines += ["", f"{CLIENT_LABELS[client]}, median seconds per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in ordered)]
    return "\n".join(lines)


STAGE_ORDER = ["extract (fetch + arrow + parquet)", "normalize", "load", "history", "models", "checks"]


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def report_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        "## Night benchmark results",
        "",
        f"{m['date']}; {m['nproc']} cores ({m['cpu']}), {m['ram_gb']} GB RAM; Python {m['python']}, dlt {m['dlt']}, "
        f"duckdb {m['duckdb']}, pyarrow {m['pyarrow']}.",
        f"Command: `{results['command']}` ({results['total_seconds'] / 60:.1f} min). Medians over rounds; "
        "wall = process spawn to exit, work = timed inside the client (imports excluded).",
    ]
    for name, scale_result in results["scales"].items():
        out += ["", table_markdown(name, scale_result["scale"], scale_result["expected"], scale_result["summary"])]
    if results["verdicts"]:
        out += ["", "### Targets", "", "| scale | target | measured | verdict |", "| --- | --- | ---: | --- |"]
        for v in results["verdicts"]:
            value = {"MB": f"{v['value']:.0f} MB", "s": f"{v['value']:.1f} s", "%": f"{v['value']:.1f}%",
                     "n": f"{v['value']:.0f}"}.get(
                v["unit"], f"{v['value']:.2f}x")
            out.append(f"| {v['scale']} | {v['target']} | {value} | {'met' if v['passed'] else 'MISSED'} |")
    throttles = results.get("throttles") or []
    if throttles:
        out += ["", "### Throttled nights (DRF fake; floor = W x (ceil(R/N) - 1), R the accepted requests)", "",
                "| throttle | headers | night | API phase s | floor s | API / floor | night wall s | requests | "
                "refused (429) | refused share | rows verified |",
                "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for throttle in throttles:
            for run in throttle["runs"]:
                out.append(f"| {throttle['rate']} | {run['headers']} | {run['night']} | {run['api_s']:.1f} | "
                           f"{run['floor_s']:.0f} | {run['api_vs_floor']:.3f}x | {run['wall_s']:.1f} | {run['requests']} | "
                           f"{run['refused']} | {run['refused_share']:.1%} | {'yes' if run['verified'] else 'NO'} |")
    costs = results.get("server_costs")
    if costs:
        out += ["", f"Servers' CPU per request ({costs['requests']} unpaged listings of 400 sessions, process CPU time / "
                "requests): " + ", ".join(f"{kind} {costs[kind]['cpu_ms_per_request']:.3f} ms"
                                          for kind in ("light", "drf") if kind in costs)]
    rl = results.get("ratelimit")
    if rl:
        out += ["", f"### Rate limiting ({rl['scale']['projects']} projects x 400 sessions, {rl['scale']['note']})", ""]
        out += ["| concurrency | 429 share | wall s | requests | 429 answers | client retries | max in flight (server) | rows verified |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for run in rl["runs"]:
            out.append(f"| {run['concurrency']} | {run['rate_429']:.0%} | {run['wall_s']:.1f} | {run['requests']} | "
                       f"{run['statuses'].get('429', 0)} | {run['retries']} | {run['max_in_flight']} | "
                       f"{'yes' if run['verified'] else 'NO'} |")
        for run in rl["runs"]:
            out += ["", f"Requests answered per second (concurrency {run['concurrency']}, 429 share {run['rate_429']:.0%}; "
                        "`n(k)` = n answers of which k were 429):", "",
                    "`" + " ".join(f"{b['requests']}" + (f"({b['429']})" if b["429"] else "") for b in run["timeline"]) + "`"]
    return "\n".join(out) + "\n"


# =====================================================================================================
# main
# =====================================================================================================


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="M,M20,MP,L", help="comma-separated: M, M20, MP, L (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scale (default 3)")
    parser.add_argument("--l-rounds", type=int, default=None, help="rounds at L (default: --rounds)")
    parser.add_argument("--out", default=str(REPO / "bench-results"),
                        help="where results.json and results.md go (default: bench-results/ in the repository)")
    parser.add_argument("--projects", type=int, default=None, help="development: projects at M/M20/MP (L gets 5x)")
    parser.add_argument("--clients", default=",".join(ALL_CLIENTS), help=f"comma-separated subset of {','.join(ALL_CLIENTS)}")
    parser.add_argument("--no-ratelimit", action="store_true", help="skip the rate-limit run")
    parser.add_argument("--ratelimit-projects", type=int, default=200, help="projects in the rate-limit run (default 200)")
    parser.add_argument("--no-throttle", action="store_true", help="skip the throttled run")
    parser.add_argument("--throttles", default=THROTTLES,
                        help=f"the throttled nights: comma-separated DRF rate:requests a night, the projects list "
                             f"included (default {THROTTLES}; a minute's window takes real minutes)")
    parser.add_argument("--no-server-cost", action="store_true", help="skip measuring the servers' CPU per request")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, logs)")
    # internal: subprocess roles
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", choices=("light", "drf"), default="light", help=argparse.SUPPRESS)
    parser.add_argument("--sessions-per-project", type=int, default=400, help=argparse.SUPPRESS)
    parser.add_argument("--latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--page-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--pipelines-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--paged", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        return serve_main(args)
    if args.client:
        return client_main(args)

    started = time.perf_counter()
    known = scales(args.projects)
    wanted = [s.strip() for s in args.scales.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        parser.error(f"unknown scale(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    clients = tuple(c for c in ALL_CLIENTS if c in {c.strip() for c in args.clients.split(",")})
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="cekura-night-"))

    def say(text: str) -> None:
        print(text, flush=True)

    command = "python benchmarks/night.py " + " ".join(sys.argv[1:])
    results: dict[str, Any] = {"command": command.strip(), "machine": machine(), "scales": {}}
    say(f"night benchmark: {results['machine']['nproc']} cores ({results['machine']['cpu']}), "
        f"{results['machine']['ram_gb']} GB; work dir {root}")
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        for name in wanted:
            scale = known[name]
            rounds = args.l_rounds if name == "L" and args.l_rounds else args.rounds
            scale_clients = tuple(c for c in clients if c in scale.clients)
            scale_result = run_scale(scale, rounds, scale_clients, root, say)
            scale_result["summary"] = summarize(scale_result)
            results["scales"][name] = scale_result
            say("")
            say(table_markdown(name, scale_result["scale"], scale_result["expected"], scale_result["summary"]))
            _write(out_dir, results, started)  # partial results survive an interrupted run
        results["verdicts"] = verdicts({n: r["summary"] for n, r in results["scales"].items()})
        if not args.no_throttle:
            results["throttles"] = []
            for spec in (part.strip() for part in args.throttles.split(",") if part.strip()):
                rate, _, requests = spec.rpartition(":")
                throttle = run_throttle(root, rate, int(requests), say)
                results["throttles"].append(throttle)
                results["verdicts"] += throttle_verdicts(throttle)
                _write(out_dir, results, started)
        if not args.no_server_cost:
            say("\n== the servers' CPU per request")
            results["server_costs"] = server_costs(root, SERVER_COST_REQUESTS, say)
            _write(out_dir, results, started)
        if not args.no_ratelimit:
            results["ratelimit"] = run_ratelimit(root, args.ratelimit_projects, say)
    finally:
        signal.signal(signal.SIGINT, previous_int)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    _write(out_dir, results, started)
    say("")
    say(report_markdown(results).split("### Targets", 1)[-1] if results.get("verdicts") else "")
    say(f"results: {out_dir / 'results.md'}, {out_dir / 'results.json'}")
    failed = [m for r in results["scales"].values() for m in r["measurements"] if not m["verified"]]
    failed += [r for r in (results.get("ratelimit") or {}).get("runs", []) if not r["verified"]]
    failed += [r for t in results.get("throttles") or [] for r in t["runs"] if not r["verified"]]
    if failed:
        say(f"{len(failed)} run(s) FAILED verification (see above)")
        return 1
    return 0


def _write(out_dir: Path, results: dict[str, Any], started: float) -> None:
    results["total_seconds"] = time.perf_counter() - started
    results.setdefault("verdicts", [])
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "results.md").write_text(report_markdown(results))


if __name__ == "__main__":
    sys.exit(main())
