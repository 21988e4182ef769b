"""How fast the fake API generates and serves benchmark-scale data: `generate` of 500 projects of
400 sessions, then each project's listing asked once over one keep-alive connection (wall seconds
of each; the listings' rows are counted against the data, and a difference exits 1).

    .venv/bin/python benchmarks/fake_api.py [--projects 500]
"""

from __future__ import annotations

import argparse
import sys
import time

import requests
from cekura_sessions.api.endpoints import API_KEY_HEADER, SESSIONS_PATH
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi

KEY = "bench-key"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=500)
    projects = parser.parse_args().projects
    started = time.perf_counter()
    data = generate(DataSpec(projects=projects, sessions_per_project=400))
    generated = time.perf_counter() - started
    served_rows = 0
    with FakeCekuraApi(data, api_key=KEY) as server, requests.Session() as http:
        http.headers[API_KEY_HEADER] = KEY
        started = time.perf_counter()
        for project in data.projects:
            answer = http.get(f"{server.url}{SESSIONS_PATH}?project_id={project['id']}", timeout=60)
            served_rows += len(answer.json())
        served = time.perf_counter() - started
    print(f"generate({projects} x 400): {generated:.2f} s; {projects} listings over keep-alive: {served:.2f} s")
    if served_rows != len(data.all_sessions()):
        print(f"the listings held {served_rows} sessions, the data {len(data.all_sessions())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
