"""The details benchmark (issue 21): a first night that reads every session's detail, against a
plain client's time for the same detail requests, and a quiet night with details against one
with --no-details; peak RSS. Served by the light server (benchmarks/light_server.py: every
detail pre-rendered), so the clients are measured, not the server.

    .venv/bin/python benchmarks/details.py [--projects 500] [--sessions-per-project 400]

Each night is `cekura-sessions run` in a fresh subprocess (wall time from spawn to exit, peak RSS
from the kernel's rusage of that child). The floor: 16 threads, one keep-alive http.client
connection each, `orjson.loads` of each detail and one Arrow table of all messages: the requests
and the parsing any client must do, nothing else.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from light_server import LightApi  # noqa: E402

from cekura_sessions.api.endpoints import API_KEY_HEADER, SESSIONS_PATH  # noqa: E402
from cekura_sessions.fake.data import DataSpec, generate  # noqa: E402

API_KEY = "bench-key"
TARGET_FIRST_VS_FLOOR = 2.0  # the details a first night reads, within 2x the floor's time for them
TARGET_QUIET = 1.2  # a quiet night with details within 1.2x one with --no-details
TARGET_RSS_MB = 400


def night(url: str, db: Path, *options: str) -> tuple[float, float, int]:
    """One `cekura-sessions run`: (wall seconds, peak RSS MB, exit code)."""
    env = {**os.environ, "CEKURA_API_KEY": API_KEY, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "cekura_sessions.cli", "--log-level", "WARNING", "run",
                                "--base-url", url, "--db", str(db), *options],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"   exit {code}: {stderr.strip().splitlines()[-1:]}")
    return wall, usage.ru_maxrss / 1024, code


def floor(url: str, session_ids: list[int], workers: int = 16) -> float:
    """Seconds for a plain client to GET and parse every detail into one Arrow table of messages."""
    parts = urlsplit(url)
    local = threading.local()
    started = time.perf_counter()

    def get(session_id: int) -> list[tuple[int, int, str, int]]:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(parts.hostname, parts.port)
        local.conn.request("GET", f"{SESSIONS_PATH}{session_id}/", headers={API_KEY_HEADER: API_KEY})
        response = local.conn.getresponse()
        body = response.read()
        if response.status != 200:
            return []
        history = orjson.loads(body).get("conversation_history") or []
        return [(session_id, i, str(m.get("role")), len(m.get("content") or "")) for i, m in enumerate(history)]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = [row for rows in pool.map(get, session_ids, chunksize=64) for row in rows]
    pa.table({"session_id": [r[0] for r in rows], "position": [r[1] for r in rows],
              "role": [r[2] for r in rows], "content_chars": [r[3] for r in rows]})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--sessions-per-project", type=int, default=400)
    args = parser.parse_args()
    started = time.perf_counter()
    dataset = generate(DataSpec(projects=args.projects, sessions_per_project=args.sessions_per_project, seed=7,
                                oddities=False))
    session_ids = [s["id"] for rows in dataset.sessions.values() for s in rows]
    with LightApi(dataset, API_KEY) as api:
        api.served.prewarm(None)
        details = api.served.prewarm_details()
        print(f"{len(session_ids):,} sessions, {details:,} details pre-rendered in {time.perf_counter() - started:.0f} s")
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            plain, plain_rss, plain_code = night(api.url, root / "plain.duckdb", "--no-details")
            quiet_plain, _, _ = night(api.url, root / "plain.duckdb", "--no-details")
            full, full_rss, full_code = night(api.url, root / "details.duckdb")
            quiet, _, quiet_code = night(api.url, root / "details.duckdb")
            api.reset_log()
            floor_s = floor(api.url, session_ids)
    details_s = full - plain
    rows = [
        ("first night, --no-details", plain, plain_rss, plain_code),
        ("first night with details", full, full_rss, full_code),
        ("quiet night, --no-details", quiet_plain, None, 0),
        ("quiet night with details", quiet, None, quiet_code),
    ]
    print("| night | wall s | peak RSS MB | exit |\n| --- | ---: | ---: | ---: |")
    for name, wall, rss, code in rows:
        print(f"| {name} | {wall:.2f} | {'' if rss is None else f'{rss:.0f}'} | {code} |")
    print(f"\ndetails' share of the first night: {details_s:.2f} s; floor for the same {len(session_ids):,} requests: "
          f"{floor_s:.2f} s -> {details_s / floor_s:.2f}x (target <= {TARGET_FIRST_VS_FLOOR}x)")
    print(f"quiet night with details / without: {quiet / quiet_plain:.2f}x (target <= {TARGET_QUIET}x)")
    print(f"peak RSS with details: {full_rss:.0f} MB (target <= {TARGET_RSS_MB} MB)")
    ok = (details_s / floor_s <= TARGET_FIRST_VS_FLOOR and quiet / quiet_plain <= TARGET_QUIET
          and full_rss <= TARGET_RSS_MB and full_code == quiet_code == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
