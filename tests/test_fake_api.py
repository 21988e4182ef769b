"""The fake Cekura API and its generated data, tested over real loopback sockets with requests."""

from __future__ import annotations

import argparse
import email.utils
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from cekura_sessions.api.endpoints import API_KEY_HEADER, PROJECTS_PATH, SESSIONS_PATH
from cekura_sessions.extract.contract import SESSION_STATUSES
from cekura_sessions.fake import command as fake_api
from cekura_sessions.fake.data import (
    CHANGE_KINDS,
    SESSION_KEYS,
    DataSpec,
    FakeDataset,
    generate,
    parse_ts,
)
from cekura_sessions.fake.server import (
    CONTENT_FAULTS,
    STATUS_FAULTS,
    FakeCekuraApi,
    Faults,
    bad_rows,
    validate_fault,
)
from support import warm

KEY = "test-key"
TIMEOUT = 60  # bounds a hang only; a healthy answer takes milliseconds, a busy machine seconds

MakeServer = Callable[..., FakeCekuraApi]


@pytest.fixture(scope="module")
def data() -> FakeDataset:
    return generate(DataSpec())


@pytest.fixture
def make_server(data: FakeDataset) -> Iterator[MakeServer]:
    """Start fake servers on port 0 (default dataset unless given); all stop at teardown."""
    started: list[FakeCekuraApi] = []

    def make(dataset: FakeDataset | None = None, **kwargs: Any) -> FakeCekuraApi:
        server = FakeCekuraApi(dataset or data, api_key=KEY, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: MakeServer) -> FakeCekuraApi:
    return make_server()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers[API_KEY_HEADER] = KEY
        yield s


def sessions_url(server: FakeCekuraApi, project_id: Any, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"project_id": project_id, **params}.items())
    return f"{server.url}{SESSIONS_PATH}?{query}"


def live_project_ids(dataset: FakeDataset) -> list[int]:
    return [p["id"] for p in dataset.projects if not p.get("is_deleted") and dataset.sessions[p["id"]]]


def outcome(http: requests.Session, url: str) -> int | str:
    try:
        return http.get(url, timeout=TIMEOUT).status_code
    except requests.ConnectionError:
        return "drop"


# --- auth and routing -------------------------------------------------------------------------


NOT_PROVIDED = "Authentication credentials were not provided."


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param({}, NOT_PROVIDED, id="missing"),
        pytest.param({API_KEY_HEADER: "wrong-key"}, "Invalid API key.", id="wrong"),
        pytest.param({API_KEY_HEADER: ""}, NOT_PROVIDED, id="empty"),
    ],
)
@pytest.mark.parametrize("endpoint", ["projects", "sessions"])
@pytest.mark.parametrize(
    ("auth", "status", "challenge"),
    [pytest.param("401", 401, f'{API_KEY_HEADER} realm="api"', id="challenge"),
     pytest.param("403", 403, None, id="drf-default")],
)
def test_auth_bad_key_answered_as_drf_does(make_server, data, headers, detail, endpoint, auth, status, challenge):
    server = make_server(auth=auth)
    url = server.url + PROJECTS_PATH if endpoint == "projects" else sessions_url(server, data.projects[0]["id"])

    r = requests.get(url, headers=headers, timeout=TIMEOUT)

    # DRF: 401 with WWW-Authenticate when the authentication class has authenticate_header, else 403
    assert (r.status_code, r.headers.get("WWW-Authenticate")) == (status, challenge), r.text
    assert r.json() == {"detail": detail}


def test_projects_plain_array_with_members_and_emails(server, http, data):
    r = http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)

    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert int(r.headers["Content-Length"]) == len(r.content)
    body = r.json()
    assert body == data.projects
    for project in body:
        emails = [m["user"]["email"] for m in project["members"] + project["organization"]["members"]]
        assert emails and all(re.fullmatch(r"person\d+@example\.com", e) for e in emails), project["id"]
        assert project["vapi_api_key"].startswith("vapi_sk_"), project["id"]
        assert project["webhook_url"].startswith("https://"), project["id"]


def test_projects_organization_filter(server, http, data):
    org_id = data.projects[0]["organization"]["id"]

    r = http.get(server.url + PROJECTS_PATH, params={"organization_id": org_id}, timeout=TIMEOUT)

    assert r.json() == [p for p in data.projects if p["organization"]["id"] == org_id]


@pytest.mark.parametrize(
    "query",
    [pytest.param("", id="missing"), pytest.param("?project_id=abc", id="not-int"), pytest.param("?project_id=", id="empty")],
)
def test_sessions_without_integer_project_id_400(server, http, query):
    r = http.get(server.url + SESSIONS_PATH + query, timeout=TIMEOUT)

    # DRF's ValidationError: the field's errors under its name
    assert r.status_code == 400, r.text
    assert r.json() == {"project_id": ["This field is required."]}


def test_sessions_unknown_project_404(server, http):
    assert http.get(sessions_url(server, 999_999), timeout=TIMEOUT).status_code == 404


def test_unknown_path_404_and_other_methods_405(server, http):
    assert http.get(server.url + "/user/v1/nope/", timeout=TIMEOUT).status_code == 404
    assert http.get(server.url + PROJECTS_PATH.rstrip("/"), timeout=TIMEOUT).status_code == 404
    post = http.post(server.url + PROJECTS_PATH, json={"name": "x"}, timeout=TIMEOUT)
    # DRF's answer: the methods the view has (HEAD with GET, OPTIONS always)
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD, OPTIONS", post.headers
    assert post.json() == {"detail": 'Method "POST" not allowed.'}
    assert http.delete(server.url + "/nope/", timeout=TIMEOUT).status_code == 404
    # the connection survived all of that (keep-alive, bodies consumed)
    assert http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT).status_code == 200


# --- listings ---------------------------------------------------------------------------------


def test_sessions_plain_array_equals_dataset(server, http, data):
    for project in data.projects:
        pid = project["id"]
        r = http.get(sessions_url(server, pid), timeout=TIMEOUT)
        assert r.status_code == 200, pid
        assert r.json() == data.sessions[pid], pid
    assert server.request_count("sessions") == len(data.projects)


def walk(http: requests.Session, url: str) -> tuple[list[dict], list[dict]]:
    """Follow next to the end: (all rows, envelopes without results)."""
    rows, envelopes = [], []
    while url:
        r = http.get(url, timeout=TIMEOUT)
        assert r.status_code == 200, (url, r.text)
        body = r.json()
        rows += body.pop("results")
        envelopes.append(body)
        url = body["next"]
    return rows, envelopes


def test_sessions_paginated_walk_next_equals_dataset(make_server, http, data):
    server = make_server(page_size=7)
    for pid in data.sessions:
        rows, envelopes = walk(http, sessions_url(server, pid))
        want = data.sessions[pid]
        assert rows == want, pid
        assert {e["count"] for e in envelopes} == {len(want)}, pid
        assert len(envelopes) == max(1, -(-len(want) // 7)), pid
        assert envelopes[0]["previous"] is None and envelopes[-1]["next"] is None
    pages = [r.page for r in server.requests_log]
    assert pages[:6] == [1, 2, 3, 4, 5, 6], pages


def test_sessions_pagination_client_page_size_kept_in_links(make_server, http, data):
    server = make_server(page_size=7, max_page_size=100)
    pid = data.projects[0]["id"]

    first = http.get(sessions_url(server, pid, page_size=15), timeout=TIMEOUT).json()
    second = http.get(first["next"], timeout=TIMEOUT).json()

    assert len(first["results"]) == 15
    assert first["next"] == f"{server.url}{SESSIONS_PATH}?page=2&page_size=15&project_id={pid}"
    # DRF drops page from the link back to page 1
    assert second["previous"] == f"{server.url}{SESSIONS_PATH}?page_size=15&project_id={pid}"
    rows, _ = walk(http, sessions_url(server, pid, page_size=15))
    assert rows == data.sessions[pid]


def test_sessions_pagination_links_follow_host_header(make_server, data):
    server = make_server(page_size=7)
    pid = data.projects[0]["id"]

    body = requests.get(
        sessions_url(server, pid), headers={API_KEY_HEADER: KEY, "Host": f"localhost:{server.port}"}, timeout=TIMEOUT
    ).json()

    assert body["next"].startswith(f"http://localhost:{server.port}{SESSIONS_PATH}?")


@pytest.mark.parametrize("page", ["0", "-1", "99", "abc"])
def test_sessions_invalid_page_404(make_server, http, data, page):
    server = make_server(page_size=7)

    r = http.get(sessions_url(server, data.projects[0]["id"], page=page), timeout=TIMEOUT)

    assert r.status_code == 404, r.text
    assert r.json() == {"detail": "Invalid page."}


def test_sessions_paginated_empty_project_has_one_empty_page(make_server, http, data):
    server = make_server(page_size=7)
    empty = next(pid for pid, rows in data.sessions.items() if not rows)

    body = http.get(sessions_url(server, empty), timeout=TIMEOUT).json()

    assert body == {"count": 0, "next": None, "previous": None, "results": []}
    assert http.get(sessions_url(server, empty, page=2), timeout=TIMEOUT).status_code == 404


def test_keep_alive_answers_without_nagle_stall(server, http, data):
    pid = data.projects[0]["id"]
    for _ in range(50):
        assert http.get(sessions_url(server, pid), timeout=TIMEOUT).status_code == 200

    # one connection carried every answer, and the server's end of it sends each write at once
    # (TCP_NODELAY): with Nagle's algorithm an answer's body waits for the ACK of its headers,
    # which the client delays ~40 ms, on every answer of a kept-alive connection (docs/upstream-behaviour.md)
    pools = http.get_adapter(server.url).poolmanager.pools
    assert sum(pools[key].num_connections for key in pools.keys()) == 1, "the client opened more than one connection"
    open_connections = server._server.open_connections()
    assert len(open_connections) == 1, f"{len(open_connections)} connections open after 50 keep-alive requests"
    assert open_connections[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_stop_ends_keep_alive_connections(make_server, http):
    server = make_server()
    assert http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT).status_code == 200

    server.stop()

    with pytest.raises(requests.ConnectionError):
        http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)


def test_dataset_reassignment_invalidates_cached_bodies(make_server, http, data):
    plain, paged = make_server(), make_server(page_size=7)
    pid = live_project_ids(data)[0]
    for s in (plain, paged):  # fill the caches
        http.get(s.url + PROJECTS_PATH, timeout=TIMEOUT)
        walk(http, sessions_url(paged, pid)) if s is paged else http.get(sessions_url(s, pid), timeout=TIMEOUT)
    night = data.next_night(seed=4)
    night.projects[0]["name"] = "Renamed overnight"
    changed = next(p for p in live_project_ids(data) if night.sessions[p] != data.sessions[p])

    plain.dataset = night
    paged.dataset = night

    assert http.get(plain.url + PROJECTS_PATH, timeout=TIMEOUT).json() == night.projects
    assert http.get(sessions_url(plain, changed), timeout=TIMEOUT).json() == night.sessions[changed]
    assert walk(http, sessions_url(paged, changed))[0] == night.sessions[changed]
    assert plain.dataset is night


def test_invalidate_cache_after_in_place_change(server, http, data):
    dataset = generate(DataSpec())
    server.dataset = dataset
    pid = live_project_ids(dataset)[0]
    http.get(sessions_url(server, pid), timeout=TIMEOUT)
    dataset.sessions[pid] = dataset.sessions[pid][:3]

    server.invalidate_cache()

    assert http.get(sessions_url(server, pid), timeout=TIMEOUT).json() == dataset.sessions[pid]


def test_request_log_counts_and_reset(server, http, data):
    a, b = data.projects[0]["id"], data.projects[1]["id"]
    for url in (server.url + PROJECTS_PATH, sessions_url(server, a), sessions_url(server, a), sessions_url(server, b)):
        http.get(url, timeout=TIMEOUT)
    http.get(server.url + "/elsewhere/", timeout=TIMEOUT)

    assert server.request_count() == 5
    assert server.request_count("projects") == 1
    assert server.request_count("sessions") == 3
    assert server.request_count("sessions", project_id=a) == 2
    assert server.request_count("other") == 1
    assert [r.status for r in server.requests_log] == [200, 200, 200, 200, 404]
    times = [r.at for r in server.requests_log]
    assert times == sorted(times)

    server.reset_log()

    assert server.request_count() == 0 and server.requests_log == []


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [pytest.param("429", "1", id="default"), pytest.param("429:0", "0", id="zero"), pytest.param("429:2", "2", id="two")],
)
def test_fault_429_retry_after(make_server, http, data, fault, retry_after):
    pid = data.projects[0]["id"]
    server = make_server(faults=Faults(script={("sessions", pid): [fault]}))

    r = http.get(sessions_url(server, pid), timeout=TIMEOUT)

    assert r.status_code == 429
    assert r.headers["Retry-After"] == retry_after
    assert "detail" in r.json()


def test_fault_429_http_date_is_1_to_2_seconds_ahead(make_server, http):
    server = make_server(faults=Faults(script={("projects", None): ["429:http-date"]}))

    r = http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)

    assert r.status_code == 429
    ahead = (email.utils.parsedate_to_datetime(r.headers["Retry-After"]) - datetime.now(timezone.utc)).total_seconds()
    assert 0.0 < ahead <= 2.0, r.headers["Retry-After"]


@pytest.mark.parametrize("fault", STATUS_FAULTS)
def test_fault_status_with_json_body(make_server, http, fault):
    server = make_server(faults=Faults(script={("projects", None): [fault]}))

    r = http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)

    assert r.status_code == int(fault)
    assert isinstance(r.json()["detail"], str)


def test_fault_drop_is_a_connection_error(make_server, http):
    server = make_server(faults=Faults(script={("projects", None): ["drop"]}))

    with pytest.raises(requests.ConnectionError):
        http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)

    assert server.requests_log[-1].status == "drop"
    assert http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT).status_code == 200


def test_fault_slow_then_normal_answer(make_server, http, data):
    pid = data.projects[0]["id"]
    server = make_server(faults=Faults(script={("sessions", pid): ["slow:0.3"]}))

    started = time.perf_counter()
    r = http.get(sessions_url(server, pid), timeout=TIMEOUT)

    assert time.perf_counter() - started >= 0.3
    assert r.json() == data.sessions[pid]
    with pytest.raises(requests.Timeout):
        server.faults = Faults(script={("sessions", pid): ["slow:0.5"]})
        http.get(sessions_url(server, pid), timeout=0.2)


def test_fault_truncated_body_is_not_json(make_server, http, data):
    pid = data.projects[0]["id"]
    server = make_server(faults=Faults(script={("sessions", pid): ["truncated"]}))

    r = http.get(sessions_url(server, pid), timeout=TIMEOUT)

    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content) > 0
    with pytest.raises(ValueError):
        r.json()


def test_fault_html_content_type(make_server, http):
    server = make_server(faults=Faults(script={("projects", None): ["html"]}))

    r = http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)

    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.text.startswith("<html>")


def test_fault_object_and_no_results(make_server, http, data):
    pid = data.projects[0]["id"]
    server = make_server(faults=Faults(script={("sessions", pid): ["object", "no_results"]}))

    first = http.get(sessions_url(server, pid), timeout=TIMEOUT).json()
    second = http.get(sessions_url(server, pid), timeout=TIMEOUT).json()

    assert first == {"detail": "ok"}
    assert second == {"count": len(data.sessions[pid]), "next": None, "previous": None}


@pytest.mark.parametrize("page_size", [pytest.param(None, id="plain"), pytest.param(7, id="paginated")])
def test_fault_bad_rows_then_normal_rows(make_server, http, data, page_size):
    pid = data.projects[0]["id"]
    server = make_server(page_size=page_size, faults=Faults(script={("sessions", pid): ["bad_rows"]}))

    body = http.get(sessions_url(server, pid), timeout=TIMEOUT).json()

    rows = body if page_size is None else body["results"]
    normal = data.sessions[pid] if page_size is None else data.sessions[pid][:7]
    assert rows == bad_rows(pid) + normal
    bad = rows[:5]
    assert "id" not in bad[0]
    assert bad[1]["id"] == "abc"
    assert bad[2]["created_at"] == "not a date"
    assert bad[3]["scenario_ids"] == "1,2,3"
    assert bad[4]["scenario_ids"] == [1, {"x": 2}]


def test_scripted_faults_consumed_in_order_then_normal(make_server, http, data):
    pid, other = data.projects[0]["id"], data.projects[1]["id"]
    faults = Faults(script={("sessions", pid): ["503", "429:0", "truncated"], ("projects", None): ["500"]})
    server = make_server(faults=faults)

    got = [http.get(sessions_url(server, pid), timeout=TIMEOUT) for _ in range(5)]

    assert [r.status_code for r in got] == [503, 429, 200, 200, 200]
    assert got[2].content != got[3].content and got[3].json() == data.sessions[pid]
    assert http.get(sessions_url(server, other), timeout=TIMEOUT).status_code == 200
    assert [http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT).status_code for _ in range(2)] == [500, 200]
    assert [r.fault for r in server.requests_log] == ["503", "429:0", "truncated", None, None, None, "500", None]
    assert faults.script == {("sessions", pid): [], ("projects", None): []}


def test_network_faults_come_before_auth_status_faults_after(make_server, data):
    pid = data.projects[0]["id"]
    server = make_server(faults=Faults(script={("sessions", pid): ["drop", "slow:0.2", "500"]}))
    wrong = {API_KEY_HEADER: "wrong"}

    with pytest.raises(requests.ConnectionError):
        requests.get(sessions_url(server, pid), headers=wrong, timeout=TIMEOUT)
    started = time.perf_counter()
    slow = requests.get(sessions_url(server, pid), headers=wrong, timeout=TIMEOUT)
    assert slow.status_code == 401 and time.perf_counter() - started >= 0.2
    # a status fault never hides a bad key (and is consumed all the same)
    assert requests.get(sessions_url(server, pid), headers=wrong, timeout=TIMEOUT).status_code == 401
    assert requests.get(sessions_url(server, pid), headers={API_KEY_HEADER: KEY}, timeout=TIMEOUT).status_code == 200


def test_always_fault_applies_every_time_to_that_project_only(make_server, http, data):
    victim, other = data.projects[0]["id"], data.projects[1]["id"]
    server = make_server(faults=Faults(always={victim: "500"}))

    assert [http.get(sessions_url(server, victim), timeout=TIMEOUT).status_code for _ in range(4)] == [500] * 4
    assert http.get(sessions_url(server, other), timeout=TIMEOUT).status_code == 200
    assert http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT).status_code == 200
    assert server.request_count("sessions", project_id=victim) == 4


def random_outcomes(make_server: MakeServer, data: FakeDataset, seed: int) -> list[int | str]:
    server = make_server(faults=Faults(random_rate=0.5, random_kinds=("500", "503", "drop"), random_seed=seed))
    urls = [server.url + PROJECTS_PATH] + [sessions_url(server, p["id"]) for p in data.projects] * 5
    with requests.Session() as http:
        http.headers[API_KEY_HEADER] = KEY
        got = [outcome(http, url) for url in urls]
    assert got == [r.status for r in server.requests_log]
    return got


def test_random_faults_deterministic_per_seed(make_server, data):
    first = random_outcomes(make_server, data, seed=3)
    again = random_outcomes(make_server, data, seed=3)
    other = random_outcomes(make_server, data, seed=4)

    assert first == again
    assert first != other
    kinds = Counter(first)
    assert kinds[200] and kinds[500] and kinds[503] and kinds["drop"], kinds


def test_rate_limit_share_and_latency(make_server, http):
    server = make_server(faults=Faults(rate_limit_rate=1.0, latency_ms=80))

    started = time.perf_counter()
    r = http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)

    assert time.perf_counter() - started >= 0.08
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"


def test_unknown_fault_is_rejected_up_front():
    assert validate_fault("429:http-date") == "429:http-date"
    with pytest.raises(ValueError):
        Faults(script={("projects", None): ["501"]})
    with pytest.raises(ValueError):
        Faults(always={1: "slow:soon"})


# --- generated data ---------------------------------------------------------------------------


def sessions_of(dataset: FakeDataset) -> list[dict]:
    return [s for _, s in dataset.all_sessions()]


def instant(text: str) -> datetime:
    return parse_ts(text)


def _skews(ds: FakeDataset) -> list[dict]:
    return [s for s in sessions_of(ds) if instant(s["updated_at"]) < instant(s["created_at"])]


def _timezones(ds: FakeDataset) -> list[Any]:
    return [p.get("timezone", "<missing>") for p in ds.projects]


ODDITIES: dict[str, Callable[[FakeDataset], bool]] = {
    "project_null": lambda ds: any(s["project"] is None for s in sessions_of(ds)),
    "project_else_listed": lambda ds: all(s["project"] in (None, pid) for pid, s in ds.all_sessions()),
    "scenario_ids_null": lambda ds: any(s["scenario_ids"] is None for s in sessions_of(ds)),
    "scenario_ids_empty": lambda ds: any(s["scenario_ids"] == [] for s in sessions_of(ds)),
    "scenario_ids_repeated": lambda ds: any(
        s["scenario_ids"] and len(set(s["scenario_ids"])) < len(s["scenario_ids"]) for s in sessions_of(ds)
    ),
    "message_count_numeric_string": lambda ds: any(s["message_count"] == "12" for s in sessions_of(ds)),
    "message_count_null": lambda ds: any(s["message_count"] is None for s in sessions_of(ds)),
    "ts_exact_z": lambda ds: any(s["created_at"] == "2026-09-03T10:00:00Z" for s in sessions_of(ds)),
    "ts_plus_0000": lambda ds: any(s["created_at"].endswith("+00:00") for s in sessions_of(ds)),
    "ts_plus_0530": lambda ds: any(s["updated_at"].endswith("+05:30") for s in sessions_of(ds)),
    "ts_minus_0800": lambda ds: any(s["created_at"].endswith("-08:00") for s in sessions_of(ds)),
    "ts_microseconds": lambda ds: any(".123456" in s["created_at"] for s in sessions_of(ds)),
    "status_outside_enum": lambda ds: any(s["status"] == "archived" for s in sessions_of(ds)),
    "clock_skew_exactly_one": lambda ds: len(_skews(ds)) == 1,
    "title_255": lambda ds: any(len(s["title"]) == 255 for s in sessions_of(ds)),
    "title_emoji": lambda ds: any("🚀" in s["title"] for s in sessions_of(ds)),
    "title_accented": lambda ds: any("é" in s["title"] for s in sessions_of(ds)),
    "title_cjk": lambda ds: any(re.search(r"[\u4e00-\u9fff]", s["title"]) for s in sessions_of(ds)),
    "project_deleted": lambda ds: any(p["is_deleted"] and ds.sessions[p["id"]] for p in ds.projects),
    "timezone_missing": lambda ds: "<missing>" in _timezones(ds),
    "timezone_unknown": lambda ds: "Mars/Olympus" in _timezones(ds),
    "timezones_named": lambda ds: {"America/New_York", "Asia/Kolkata", "Australia/Sydney", "Pacific/Kiritimati"}
    <= set(_timezones(ds)),
    "project_zero_sessions": lambda ds: any(not p["is_deleted"] and not ds.sessions[p["id"]] for p in ds.projects),
}


@pytest.mark.parametrize("name", list(ODDITIES))
def test_default_data_has_oddity(data, name):
    assert ODDITIES[name](data), name


def test_timezone_null_needs_a_seventh_project():
    # six projects cannot hold seven timezone states; the seventh project carries null
    assert None in _timezones(generate(DataSpec(projects=7)))


def test_default_data_documented_placements(data):
    p = data.projects
    rows = [data.sessions[project["id"]] for project in p]
    assert rows[0][0]["project"] is None and rows[0][1]["scenario_ids"] is None and rows[0][2]["scenario_ids"] == []
    assert rows[0][4]["message_count"] == "12" and rows[0][5]["message_count"] is None
    assert rows[1][0]["created_at"] == "2026-09-03T10:00:00Z"
    assert rows[1][5]["status"] == "archived" and _skews(data) == [rows[1][6]]
    assert rows[1][4]["created_at"].endswith(".123456Z") and rows[1][4]["updated_at"].endswith(".654321+00:00")
    assert len(rows[3][0]["title"]) == 255
    assert p[2]["is_deleted"] and "timezone" not in p[4] and rows[4] == [] and p[5]["timezone"] == "Mars/Olympus"


def test_default_data_shape_and_invariants(data):
    sessions = sessions_of(data)
    assert len(data.projects) == 6 and len(sessions) == 5 * 40
    assert all(tuple(s) == SESSION_KEYS for s in sessions)
    ids = [s["id"] for s in sessions]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids)
    assert max(ids) < data.next_session_id
    scenario_ids = [i for s in sessions for i in s["scenario_ids"] or []]
    assert all(isinstance(i, int) and 1 <= i <= 5000 for i in scenario_ids)
    assert all(len(s["title"]) <= 255 for s in sessions)
    assert all(instant(s["created_at"]) < data.as_of and instant(s["updated_at"]) < data.as_of for s in sessions)
    assert data.project(data.projects[3]["id"]) is data.projects[3]
    with pytest.raises(KeyError):
        data.project(-1)


def test_statuses_weighted_realistically():
    counts = Counter(s["status"] for s in sessions_of(generate(DataSpec(projects=20, sessions_per_project=200))))
    enum = [counts[s] for s in ("completed", "failed", "cancelled", "in_progress", "pending")]
    assert enum == sorted(enum, reverse=True), counts  # open sessions are the recent ones: few (test_demo_data.py)
    assert sum(enum) > 0.99 * sum(counts.values()), counts


def test_clean_data_has_no_oddities():
    ds = generate(DataSpec(oddities=False))
    sessions = sessions_of(ds)
    assert len(sessions) == 6 * 40
    assert all(s["project"] == pid for pid, s in ds.all_sessions())
    assert all(s["scenario_ids"] and len(set(s["scenario_ids"])) == len(s["scenario_ids"]) for s in sessions)
    assert all(isinstance(s["message_count"], int) for s in sessions)
    assert all(s["status"] in SESSION_STATUSES for s in sessions)
    z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    assert all(z.fullmatch(s["created_at"]) and z.fullmatch(s["updated_at"]) for s in sessions)
    assert all(s["updated_at"] >= s["created_at"] and s["title"].isascii() for s in sessions)
    assert not any(p["is_deleted"] for p in ds.projects)
    assert all(isinstance(p.get("timezone"), str) and "/" in p["timezone"] or p["timezone"] == "UTC" for p in ds.projects)


def test_generate_is_deterministic_per_seed():
    assert generate(DataSpec()) == generate(DataSpec())
    assert generate(DataSpec(seed=8)) != generate(DataSpec())


def test_next_night_changes_of_each_kind(data):
    before = {s["id"]: s for s in sessions_of(data)}
    night = data.next_night(seed=1)
    after = {s["id"]: s for s in sessions_of(night)}
    common = before.keys() & after.keys()

    emptied = [p for p in live_project_ids(data) if not night.sessions[p]]
    moved = [i for i in common if after[i]["status"] != before[i]["status"]]
    lists = [(before[i]["scenario_ids"], after[i]["scenario_ids"]) for i in common]
    shrunk = [b for b, a in lists if b and a and len(a) < len(b) and a == b[: len(a)]]
    reordered = [b for b, a in lists if b and a and a != b and sorted(a) == sorted(b)]
    cleared = [b for b, a in lists if b and a == []]
    deleted = before.keys() - after.keys() - {s["id"] for p in emptied for s in data.sessions[p]}
    new = after.keys() - before.keys()

    assert len(emptied) == 1 and night.last_changes["project_emptied"] == emptied
    assert moved and shrunk and reordered and cleared and deleted and new
    assert min(new) >= data.next_session_id, "ids are never reused"
    assert set(night.last_changes) == set(CHANGE_KINDS)
    assert set(night.last_changes["deleted"]) == deleted and set(night.last_changes["new"]) == new
    for i in moved:
        assert instant(after[i]["updated_at"]) > instant(before[i]["updated_at"]), i
    assert night.as_of > data.as_of
    assert data == generate(DataSpec()), "next_night must not touch the original"
    assert night == data.next_night(seed=1) and night != data.next_night(seed=2)


def test_second_night_keeps_ids_fresh(data):
    first = data.next_night(seed=1)
    second = first.next_night(seed=2)
    seen = {s["id"] for s in sessions_of(data)} | {s["id"] for s in sessions_of(first)}
    assert not (set(second.last_changes["new"]) & seen)


# --- command line -----------------------------------------------------------------------------


def test_add_arguments_defaults():
    parser = argparse.ArgumentParser()
    fake_api.add_arguments(parser)

    args = parser.parse_args(["--fail-project", "101", "--fail-project", "102", "--rate-limit-429", "0.1"])

    assert (args.host, args.port, args.api_key, args.page_size) == ("127.0.0.1", 8765, "demo-key", None)
    assert args.fail_project == [101, 102] and args.rate_limit_429 == 0.1


# Ctrl-C first gets Python's own handler back, as a terminal's foreground job has it: a shell
# starts a job in the background (`make test &`) with SIGINT ignored, every process under it
# inherits that, and Python then leaves SIGINT ignored (seen: the server and the test's worker
# both had SIGINT and SIGQUIT in /proc's SigIgn, and Ctrl-C stopped nothing in 120 s)
SERVE = (
    "import argparse, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from cekura_sessions.fake import command as fake_api\n"
    "p = argparse.ArgumentParser(); fake_api.add_arguments(p)\n"
    "sys.exit(fake_api.serve(p.parse_args(sys.argv[1:])))\n"
)
# the command as the tests start it: with faulthandler on, so a stop that hangs can be asked
# where it stands (SIGABRT) instead of failing with nothing to read
SERVE_COMMAND = [sys.executable, "-X", "faulthandler", "-c", SERVE]


def _interrupted(proc: subprocess.Popen, seconds: float) -> tuple[str, str]:
    """Ctrl-C `proc` and wait up to `seconds` (bounds a hang only: a healthy stop takes a second);
    a process still running then fails the test with the stack of each of its threads."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        # the signals it blocks, ignores, catches and has pending (proc(5)), and this process's own
        state = _signal_state(f"/proc/{proc.pid}/status"), _signal_state("/proc/self/status")
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack, then it ends
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the server did not stop within {seconds} s of Ctrl-C; its signals: {state[0]}; "
                    f"the test's: {state[1]}; its threads:\n{err}")


def _signal_state(status: str) -> str:
    with open(status, encoding="ascii") as lines:
        return " ".join(line.strip() for line in lines
                        if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))


@pytest.mark.e2e  # the server's command line in a subprocess
def test_serve_prints_url_serves_and_stops_cleanly_on_ctrl_c():
    proc = subprocess.Popen(
        [*SERVE_COMMAND, "--port", "0", "--projects", "3", "--fail-project", "999"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", banner).group(0)
        assert "demo-key" in banner
        r = requests.get(url + PROJECTS_PATH, headers={API_KEY_HEADER: "demo-key"}, timeout=TIMEOUT)
        assert r.status_code == 200 and len(r.json()) == 3
        out, err = _interrupted(proc, 120)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert "Traceback" not in err and out == ""


# --- DRF's limit/offset paging, and listings that move between pages -----------------------


def _read_all_pages(http: requests.Session, url: str) -> tuple[list[int], list[int]]:
    """Follow `next` to the end: (ids in order read, `count` of each page)."""
    ids, counts = [], []
    while url:
        body = http.get(url, timeout=TIMEOUT).json()
        ids += [row["id"] for row in body["results"]]
        counts.append(body["count"])
        url = body["next"]
    return ids, counts


def test_limit_offset_pages_follow_drf(make_server, http, data):
    server = make_server(page_size=7, pagination="limit_offset")
    pid = max(live_project_ids(data), key=lambda p: len(data.sessions[p]))
    want = [s["id"] for s in data.sessions[pid]]

    first = http.get(sessions_url(server, pid), timeout=TIMEOUT).json()
    past_end = http.get(sessions_url(server, pid, limit=7, offset=len(want) + 3), timeout=TIMEOUT)

    assert first["next"].endswith(f"limit=7&offset=7&project_id={pid}"), first["next"]
    assert first["previous"] is None
    assert _read_all_pages(http, sessions_url(server, pid))[0] == want
    assert past_end.status_code == 200 and past_end.json()["results"] == [], "DRF: an empty page, not a 404"


@pytest.mark.parametrize(
    "move, reads",
    [
        # what each move does to a page-by-page read of [r0, r1, ...] with pages of 7 (r7 starts page 2)
        pytest.param("insert-first", lambda ids: ids[:7] + [ids[6]] + ids[7:], id="insert-first-repeats-a-row"),
        pytest.param("delete-first", lambda ids: ids[:7] + ids[8:], id="delete-first-skips-a-row"),
        pytest.param("swap", lambda ids: ids[:7] + ids[8:] + ["new"], id="swap-skips-a-row-count-unchanged"),
    ],
)
def test_a_move_changes_the_listing_between_its_first_and_second_page(make_server, http, data, move, reads):
    pid = max(live_project_ids(data), key=lambda p: len(data.sessions[p]))
    ids = [s["id"] for s in data.sessions[pid]]
    assert len(ids) > 14, "the default data needs a project of three pages"
    server = make_server(page_size=7, faults=Faults(moves={pid: [move]}))

    got, counts = _read_all_pages(http, sessions_url(server, pid))

    new_id = data.next_session_id
    assert got == [new_id if i == "new" else i for i in reads(ids)]
    assert counts[0] == len(ids) and set(counts[1:]) == {len(server.dataset.sessions[pid])}
    again, _ = _read_all_pages(http, sessions_url(server, pid))  # the move was used up: a clean read
    assert again == [s["id"] for s in server.dataset.sessions[pid]]


def test_a_shrink_makes_the_last_next_link_answer_invalid_page(make_server, http, data):
    pid = max(live_project_ids(data), key=lambda p: len(data.sessions[p]))
    pages = -(-len(data.sessions[pid]) // 7)
    server = make_server(page_size=7, faults=Faults(moves={pid: ["shrink"]}))
    last = sessions_url(server, pid, page=pages)

    http.get(sessions_url(server, pid), timeout=TIMEOUT)  # page 1 goes out, then the listing shrinks
    r = http.get(last, timeout=TIMEOUT)

    assert (r.status_code, r.json()) == (404, {"detail": "Invalid page."})


def test_fake_api_command_takes_moves_and_pagination():
    parser = argparse.ArgumentParser()
    fake_api.add_arguments(parser)
    args = parser.parse_args(["--pagination", "limit_offset", "--move-listing", "3:swap", "--move-listing", "3:shrink"])
    assert (args.pagination, fake_api._moves(args.move_listing)) == ("limit_offset", {3: ["swap", "shrink"]})
    with pytest.raises(SystemExit):
        parser.parse_args(["--move-listing", "3:teleport"])


# --- DRF's paging classes as a deployment configures them ---------------------------------------


def _walk_ids(http: requests.Session, url: str) -> tuple[list[Any], list[int]]:
    """Every row id following `next` to the end, and each page's row count."""
    ids, sizes = [], []
    while url:
        r = http.get(url, timeout=TIMEOUT)
        assert r.status_code == 200, (url, r.text)
        body = r.json()
        ids += [row["id"] for row in body["results"]]
        sizes.append(len(body["results"]))
        url = body["next"]
    return ids, sizes


@pytest.mark.parametrize("pagination", ["page_number", "cursor"])
@pytest.mark.parametrize(
    ("max_page_size", "asked", "granted"),
    [pytest.param(None, 20, 7, id="no-page-size-param-ignores-the-client"),
     pytest.param(12, 20, 12, id="capped-at-max-page-size"),
     pytest.param(50, 10, 10, id="granted-as-asked")],
)
def test_page_size_query_param_granted_up_to_max_page_size(make_server, http, data, pagination, max_page_size,
                                                            asked, granted):
    server = make_server(page_size=7, pagination=pagination, max_page_size=max_page_size)
    pid = max(live_project_ids(data), key=lambda p: len(data.sessions[p]))
    want = [s["id"] for s in data.sessions[pid]]

    got, sizes = _walk_ids(http, sessions_url(server, pid, page_size=asked))

    assert sorted(got) == sorted(want) and len(got) == len(want)
    assert sizes == [granted] * (len(want) // granted) + ([len(want) % granted] if len(want) % granted else [])


@pytest.mark.parametrize(("max_page_size", "granted"), [(None, 25), (12, 12)])
def test_limit_offset_limit_granted_up_to_max_limit(make_server, http, data, max_page_size, granted):
    server = make_server(page_size=7, pagination="limit_offset", max_page_size=max_page_size)
    pid = max(live_project_ids(data), key=lambda p: len(data.sessions[p]))
    want = [s["id"] for s in data.sessions[pid]]

    got, sizes = _walk_ids(http, sessions_url(server, pid, limit=25))

    assert got == want
    assert sizes[0] == min(granted, len(want))


def test_cursor_pages_have_no_count_and_opaque_links(make_server, http, data):
    server = make_server(page_size=7, pagination="cursor")
    pid = max(live_project_ids(data), key=lambda p: len(data.sessions[p]))

    first = http.get(sessions_url(server, pid), timeout=TIMEOUT).json()

    assert set(first) == {"next", "previous", "results"}, "DRF's CursorPagination sends no count"
    assert "cursor=" in first["next"] and first["previous"] is None
    assert [s["id"] for s in first["results"]] == [s["id"] for s in data.sessions[pid][:7]]
    assert [r.page for r in server.requests_log] == [1]


def test_a_stopped_server_starts_again_on_its_port(make_server, http):
    server = make_server()
    port = server.port
    server.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT)

    server.start()

    assert server.port == port
    assert http.get(server.url + PROJECTS_PATH, timeout=TIMEOUT).status_code == 200


# --- every switch the fake has, from `fake-api` ---------------------------------------------------

# each field of Faults -> the fake-api option that sets it: a new field without an option fails here
FAULT_OPTIONS = {
    "script": "--script", "always": "--project-fault", "random_rate": "--fault-rate",
    "random_kinds": "--fault-kinds", "random_seed": "--fault-seed", "latency_ms": "--latency-ms",
    "rate_limit_rate": "--rate-limit-429", "throttle": "--throttle", "throttle_headers": "--throttle-headers",
    "next_links": "--next-links", "moves": "--move-listing", "string_ids": "--string-ids",
    "raw_byte_projects": "--raw-byte-title", "nan_field": "--nan-field",
    "ignore_project_filter": "--ignore-project-filter", "empty_listings": "--empty-listing",
    "hidden_projects": "--hide-project",
}
# each parameter of FakeCekuraApi -> its option; `clock` is the throttle's timer, scaled by tests only
SERVER_OPTIONS = {
    "api_key": "--api-key", "page_size": "--page-size", "pagination": "--pagination", "host": "--host",
    "port": "--port", "max_page_size": "--max-page-size", "auth": "--auth", "threads": "--threads",
}
FAULT_NAMES = [*STATUS_FAULTS, *CONTENT_FAULTS, "429:SECONDS", "429:http-date", "drop", "slow:SECONDS",
               "trickle:SECONDS"]


def test_fake_api_help_shows_every_switch_the_fake_has():
    import dataclasses
    import inspect

    from cekura_sessions.fake.views import ServerConfig

    done = warm.run([sys.executable, "-m", "cekura_sessions.cli", "fake-api", "--help"],
                    capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})

    assert done.returncode == 0, done.stderr
    assert {field.name for field in dataclasses.fields(Faults)} == FAULT_OPTIONS.keys()
    parameters = set(inspect.signature(FakeCekuraApi).parameters) - {"dataset", "faults", "clock"}
    assert parameters == SERVER_OPTIONS.keys()
    # the server's per-request settings: set from the options above, or internal (the data, DRF's classes)
    configured = {field.name for field in dataclasses.fields(ServerConfig)} - {"served", "paginations"}
    assert configured <= SERVER_OPTIONS.keys() | FAULT_OPTIONS.keys(), configured
    missing = [option for option in [*FAULT_OPTIONS.values(), *SERVER_OPTIONS.values()]
               if f"  {option} " not in done.stdout and f"  {option}\n" not in done.stdout]
    assert missing == [], f"options not in fake-api --help: {missing}"
    unnamed = [name for name in FAULT_NAMES if not re.search(rf"(^|[ ,]){re.escape(name)}([ ,]|$)", done.stdout, re.M)]
    assert unnamed == [], f"faults not named in fake-api --help: {unnamed}"


def test_fake_api_options_build_the_faults_they_name():
    parser = argparse.ArgumentParser()
    fake_api.add_arguments(parser)

    args = parser.parse_args([
        "--script", "sessions:101=503,429:http-date", "--script", "projects=drop", "--script", "sessions:101=truncated",
        "--script", "details=404", "--script", "details:7=slow:0.5", "--fail-project", "102",
        "--project-fault", "103:bad_rows", "--fault-rate", "0.2", "--fault-kinds", "502,trickle:0.01",
        "--fault-seed", "9", "--latency-ms", "5", "--rate-limit-429", "0.1", "--throttle", "10/s",
        "--throttle-headers", "ratelimit", "--next-links", "relative", "--move-listing", "101:swap",
        "--string-ids", "--raw-byte-title", "104", "--nan-field", "--ignore-project-filter",
        "--empty-listing", "105", "--empty-listing", "106", "--hide-project", "107", "--no-oddities", "--threads", "4",
    ])

    assert fake_api._faults(args) == Faults(
        script={("sessions", 101): ["503", "429:http-date", "truncated"], ("projects", None): ["drop"],
                ("details", None): ["404"], ("details", 7): ["slow:0.5"]},
        always={102: "500", 103: "bad_rows"}, random_rate=0.2, random_kinds=("502", "trickle:0.01"), random_seed=9,
        latency_ms=5.0, rate_limit_rate=0.1, throttle="10/s", throttle_headers="ratelimit", next_links="relative",
        moves={101: ["swap"]}, string_ids=True, raw_byte_projects=(104,), nan_field=True, ignore_project_filter=True,
        empty_listings=(105, 106), hidden_projects=(107,),
    )
    assert (args.oddities, args.threads) == (False, 4)


@pytest.mark.parametrize("argv", [
    pytest.param(["--script", "sessions=500"], id="sessions-without-a-project"),
    pytest.param(["--script", "projects:3=500"], id="projects-with-an-id"),
    pytest.param(["--script", "sessions:3=teapot"], id="unknown-fault"),
    pytest.param(["--project-fault", "3"], id="project-without-a-fault"),
    pytest.param(["--fault-kinds", "500,slow:soon"], id="unknown-kind"),
])
def test_fake_api_refuses_a_fault_it_does_not_have(argv):
    parser = argparse.ArgumentParser()
    fake_api.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)


@pytest.mark.e2e  # the server's command line in a subprocess
def test_fake_api_serves_the_scripted_faults_and_drift_it_was_given():
    data = generate(DataSpec(projects=4, sessions_per_project=5, as_of=datetime(2029, 2, 1).date()))
    live = [p["id"] for p in data.projects if not p.get("is_deleted") and data.sessions.get(p["id"])]
    scripted, emptied, hidden = live[0], live[1], live[-1]
    proc = subprocess.Popen(
        [*SERVE_COMMAND, "--port", "0", "--projects", "4", "--sessions-per-project", "5",
         "--as-of", "2029-02-01", "--api-key", KEY, "--script", f"sessions:{scripted}=503,404",
         "--empty-listing", str(emptied), "--hide-project", str(hidden), "--string-ids"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
        headers = {API_KEY_HEADER: KEY}
        projects = requests.get(url + PROJECTS_PATH, headers=headers, timeout=TIMEOUT).json()
        answers = [requests.get(f"{url}{SESSIONS_PATH}?project_id={scripted}", headers=headers, timeout=TIMEOUT)
                   for _ in range(3)]
        empty = requests.get(f"{url}{SESSIONS_PATH}?project_id={emptied}", headers=headers, timeout=TIMEOUT).json()
    finally:
        _interrupted(proc, 120)

    assert [p["id"] for p in projects] == [str(p["id"]) for p in data.projects if p["id"] != hidden]
    assert [r.status_code for r in answers] == [503, 404, 200]
    assert [s["id"] for s in answers[2].json()] == [str(s["id"]) for s in data.sessions[scripted]]
    assert empty == []
