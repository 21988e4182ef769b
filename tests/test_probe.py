"""`cekura-sessions probe` against the fake API: the key checked, the projects and their
sessions, the pagination and the page size granted, rate-limit headers and the requests a night
needs, every number computed here in plain Python from the fake's data; nothing written. A bad
key or an unreachable URL: exit 2 with the line `run` prints."""

from __future__ import annotations

import json
import math
import subprocess
import time

import pytest
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, warm
from support.ports import refused_port
from support.processes import CLI, cli_env
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the CLI as its own process, against the fake API

SERVER_PAGE = 7
MAX_PAGE = 10
WRONG_KEY = "wrong-key-93be-never-printed"


@pytest.fixture(scope="module")
def data():
    return generate(DataSpec(projects=5, sessions_per_project=40, seed=3))


def _probe(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The command in an empty working folder of its own, so a file it wrote would show."""
    folder = tmp_path / "cwd"
    folder.mkdir(exist_ok=True)
    return warm.run([*CLI, "probe", *args], env=cli_env(tmp_path, **env), cwd=folder, capture_output=True,
                    text=True, timeout=120)


def _nothing_written(tmp_path) -> None:
    assert list((tmp_path / "cwd").iterdir()) == [], "probe wrote into its working folder"
    assert not (tmp_path / "dlt-data").exists(), "probe made a dlt folder"


def _project_lines(data, sessions: dict[int, int | None]) -> list[str]:
    names = {p["id"]: p.get("name") for p in data.projects}
    lines = []
    for pid, count in sessions.items():
        said = f"{count} sessions" if count is not None else "sessions unknown (no count)"
        lines.append(f"  {pid}  {json.dumps(names[pid], ensure_ascii=False)}  {said}")
    for project in data.projects:
        if project.get("is_deleted"):
            lines.append(f"  {project['id']}  {json.dumps(project.get('name'), ensure_ascii=False)}  "
                         "not loaded: deleted upstream")
    return lines


def _expected(data, pagination: str | None) -> tuple[dict[int, int | None], str, str, str]:
    """(sessions per listed project, the pagination line, the page-size line, the requests line)
    for the fake serving `data` with SERVER_PAGE and MAX_PAGE, asked for 1000 rows a page."""
    listed = expected.listed_project_ids(data)
    rows = {p: len(data.sessions[p]) for p in listed}
    if pagination is None:
        sessions: dict[int, int | None] = dict(rows)
        return (sessions, "none", f"every listing fits one answer (the largest holds {max(rows.values())}; asked 1000)",
                f"{1 + len(listed)} (1 projects list + {len(listed)} listing requests)")
    if pagination == "cursor":  # no count: a listing of several pages has an unknown length
        sessions = {p: (n if n <= MAX_PAGE else None) for p, n in rows.items()}
        unknown = sum(1 for n in sessions.values() if n is None)
        known = len(listed) - unknown
        return (sessions, "cursor", f"{MAX_PAGE} granted (asked 1000)",
                f"unknown (no count for {unknown} project(s)); at least {1 + known + 2 * unknown}")
    if pagination == "limit_offset":
        needed = sum(1 + math.ceil(max(0, n - SERVER_PAGE) / MAX_PAGE) for n in rows.values())
        size = (f"{MAX_PAGE} granted on `next` links (asked 1000); first pages hold the server's default limit, "
                f"{SERVER_PAGE}")
    else:
        needed = sum(max(1, math.ceil(n / MAX_PAGE)) for n in rows.values())
        size = f"{MAX_PAGE} granted (asked 1000)"
    return dict(rows), pagination, size, f"{1 + needed} (1 projects list + {needed} listing requests)"


@pytest.mark.parametrize("pagination", [None, "page_number", "limit_offset", "cursor"])
def test_probe_reports_what_a_night_meets(tmp_path, data, pagination):
    paging = {"page_size": SERVER_PAGE, "pagination": pagination, "max_page_size": MAX_PAGE} if pagination else {}
    assert max(len(s) for s in data.sessions.values()) > 2 * MAX_PAGE, "the test data needs listings of several pages"
    with FakeCekuraApi(data, api_key=API_KEY, **paging) as api:
        result = _probe(tmp_path, "--base-url", api.url, "--dataset", "elsewhere")

    assert result.returncode == 0, result.stderr
    sessions, kind, size, requests = _expected(data, pagination)
    assert result.stdout.splitlines() == [
        f"probe: the API at {api.url} accepted the key from CEKURA_API_KEY; nothing was written",
        f"projects: {len(data.projects)} seen, {len(sessions)} a night loads",
        *_project_lines(data, sessions),
        f"pagination: {kind}",
        f"page size: {size}",
        "rate-limit headers: none seen",
        f"requests a night needs: {requests}",
    ], result.stdout
    _nothing_written(tmp_path)


def test_probe_of_a_server_that_takes_no_page_size_shows_its_own(tmp_path, data):
    pid = expected.listed_project_ids(data)[0]
    n = len(data.sessions[pid])
    with FakeCekuraApi(data, api_key=API_KEY, page_size=SERVER_PAGE) as api:
        result = _probe(tmp_path, "--base-url", api.url, "--project-id", str(pid), "--page-size", "500")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"page size: {SERVER_PAGE} granted (asked 500)" in lines, result.stdout
    pages = math.ceil(n / SERVER_PAGE)
    assert lines[-1] == f"requests a night needs: {1 + pages} (1 projects list + {pages} listing requests)"
    assert f"projects: {len(data.projects)} seen, 1 a night loads" in lines


@pytest.mark.parametrize("style, names", [
    pytest.param("ratelimit", ("Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset"), id="ratelimit"),
    pytest.param("x-ratelimit", ("X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"), id="x-ratelimit"),
])
def test_probe_shows_the_rate_limit_headers_seen(tmp_path, data, style, names):
    with FakeCekuraApi(data, api_key=API_KEY, faults=Faults(throttle="500/min", throttle_headers=style)) as api:
        result = _probe(tmp_path, "--base-url", api.url)

    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("rate-limit headers: "))
    shown = dict(part.split(": ", 1) for part in line.removeprefix("rate-limit headers: ").split("; "))
    assert [name.lower() for name in shown] == [name.lower() for name in names], line
    assert shown[next(n for n in shown if n.lower().endswith("-limit"))] == "500", line


@pytest.mark.parametrize("auth, said", [
    pytest.param("401", "(HTTP 401)", id="401"),
    pytest.param("403", '(HTTP 403: "Invalid API key.")', id="403"),
])
def test_probe_with_a_bad_key_says_what_run_says(tmp_path, data, auth, said):
    with FakeCekuraApi(data, api_key=API_KEY, auth=auth) as api:
        result = _probe(tmp_path, "--base-url", api.url, CEKURA_API_KEY=WRONG_KEY)
        asked = api.request_count()

    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines() == [
        f"cekura-sessions: the API at {api.url} refused the key {said}; check the key in CEKURA_API_KEY"], result.stderr
    assert result.stdout == "" and asked == 1
    assert WRONG_KEY not in result.stderr
    _nothing_written(tmp_path)


def test_probe_of_an_unreachable_url_says_what_run_says_within_seconds(tmp_path):
    with refused_port() as port:
        started = time.monotonic()
        result = _probe(tmp_path, "--base-url", f"http://127.0.0.1:{port}")
        seconds = time.monotonic() - started

    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines()[-1] == (
        f"cekura-sessions: nothing loaded: listing projects failed: http://127.0.0.1:{port} refused the connection "
        f"(nothing listens on port {port} there); check the base URL's host and port, and that the API is up")
    # not the outage wait (RetryPolicy.outage_seconds, 90 s) a server once reached gets; the
    # process's start-up alone can take seconds on a busy machine, so no tighter bound
    assert seconds < 60, f"probe took {seconds:.1f} s to give up"
    _nothing_written(tmp_path)


def test_probe_refuses_a_dataset_name_the_night_would_refuse(tmp_path, data):
    with FakeCekuraApi(data, api_key=API_KEY) as api:
        result = _probe(tmp_path, "--base-url", api.url, "--dataset", "Team A")
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert "'Team A'" in line and "'team_a'" in line and result.stdout == "", (line, result.stdout)
