"""The benchmarks' own server for the big scales: the fake API's data, pre-rendered, over a
minimal threaded HTTP/1.1 server (no Django).

Why not the fake API (a Django REST framework app): DRF costs about 0.35 ms of CPU a request
before any socket and renders every page's JSON on every request; at M (500 listings) and MP
(2,000 pages) that is server time the clients would be measured against, and the floor client
would measure Django instead of the network. This is the earlier hand-written fake, kept to
what the scales need: the two endpoints, DRF's page-number paging cut from pre-rendered bodies
(the server's own page size: a client's `page_size` is ignored, as a DRF server without
`page_size_query_param` does), added latency, and random faults (429 with Retry-After 1 for the
rate-limit run, 5xx, drops). Throttle behaviour is measured against the DRF fake itself.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import orjson
from cekura_sessions.api.endpoints import API_KEY_HEADER, PROJECTS_PATH, SESSIONS_PATH
from cekura_sessions.fake.data import FakeDataset
from cekura_sessions.fake.faults import Answer, Faults, detail_answer, status_fault


class RequestRecord(NamedTuple):
    endpoint: str  # "projects" / "sessions" / "other"
    project_id: int | None
    page: int | None
    status: int | str  # HTTP status, or "drop"
    fault: str | None
    at: float  # time.monotonic() when the answer went out


def _int_param(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class Served:
    """One dataset and the bodies cut from it, encoded once (prewarm() encodes them all)."""

    def __init__(self, dataset: FakeDataset) -> None:
        self.dataset = dataset
        self.project_ids = {p.get("id") for p in dataset.projects}
        self.bodies: dict[tuple[Any, ...], bytes] = {}  # racing fills write equal bytes: no lock

    def _cached(self, key: tuple[Any, ...], rows: Callable[[], list[dict]]) -> bytes:
        body = self.bodies.get(key)
        if body is None:
            body = orjson.dumps(rows())
            self.bodies[key] = body
        return body

    def projects_body(self) -> bytes:
        return self._cached(("projects",), lambda: self.dataset.projects)

    def sessions(self, project_id: int) -> list[dict]:
        return self.dataset.sessions.get(project_id, [])

    def sessions_body(self, project_id: int) -> bytes:
        return self._cached(("sessions", project_id), lambda: self.sessions(project_id))

    def page_results(self, project_id: int, page: int, page_size: int) -> bytes:
        start = (page - 1) * page_size
        return self._cached(("page", project_id, page, page_size),
                            lambda: self.sessions(project_id)[start:start + page_size])

    def detail_body(self, session_id: int) -> bytes | None:
        """A session's detail (fake/conversations.py, as the DRF fake answers it), or None (404)."""
        body = self.bodies.get(("detail", session_id))
        if body is None:
            if not hasattr(self, "_by_id"):
                self._by_id = {s["id"]: s for rows in self.dataset.sessions.values() for s in rows}
            detail = self.dataset.detail_of(self._by_id.get(session_id))
            if detail is None:
                return None
            body = self.bodies[("detail", session_id)] = orjson.dumps(detail)
        return body

    def prewarm_details(self) -> int:
        """Encode every session's detail now; returns how many there are."""
        return sum(self.detail_body(s["id"]) is not None for rows in self.dataset.sessions.values() for s in rows)

    def prewarm(self, page_size: int | None) -> None:
        """Encode every body now, so no client pays the server's first-request cost."""
        self.projects_body()
        for project in self.dataset.projects:
            pid = project["id"]
            if page_size is None:
                self.sessions_body(pid)
            else:
                for page in range(1, max(1, math.ceil(len(self.sessions(pid)) / page_size)) + 1):
                    self.page_results(pid, page, page_size)


class LightApi:
    """``with LightApi(dataset, api_key, page_size) as api: ...``: serves on loopback at api.url.
    `faults`: latency, random faults (fake/faults.py kinds: 429, 5xx, drop); throttles are not
    served here. `requests_log` as the fake API keeps it; `in_flight` counts requests being served."""

    def __init__(self, dataset: FakeDataset, api_key: str, page_size: int | None = None,
                 faults: Faults | None = None) -> None:
        self.api_key = api_key
        self.page_size = page_size
        self.served = Served(dataset)
        self.requests_log: list[RequestRecord] = []
        self.log_lock = threading.Lock()
        self._fault_lock = threading.Lock()
        self.in_flight = {"now": 0, "max": 0}
        self.faults = faults or Faults()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def dataset(self) -> FakeDataset:
        return self.served.dataset

    @dataset.setter
    def dataset(self, dataset: FakeDataset) -> None:
        served = Served(dataset)
        served.prewarm(self.page_size)
        self.served = served

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._fault_lock:
            self._faults = faults
            self._rng = random.Random(faults.random_seed)

    def start(self) -> LightApi:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="light-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server.close_connections()

    def __enter__(self) -> LightApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_log(self) -> None:
        with self.log_lock:
            self.requests_log.clear()
            self.in_flight["max"] = self.in_flight["now"]

    def record(self, endpoint: str, project_id: int | None, page: int | None, status: int | str,
               fault: str | None) -> None:
        with self.log_lock:
            self.requests_log.append(RequestRecord(endpoint, project_id, page, status, fault, time.monotonic()))

    def next_fault(self, endpoint: str) -> str | None:
        if endpoint == "other":
            return None
        with self._fault_lock:
            faults = self._faults
            draw, kind_draw = self._rng.random(), self._rng.random()
            if draw < faults.random_rate and faults.random_kinds:
                return faults.random_kinds[int(kind_draw * len(faults.random_kinds))]
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the clients open many connections at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: LightApi) -> None:
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is normal here, not a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive + Nagle stalls every answer ~40 ms (docs/upstream-behaviour.md)
    timeout = 120
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        api = self.server.api
        with api.log_lock:
            api.in_flight["now"] += 1
            api.in_flight["max"] = max(api.in_flight["max"], api.in_flight["now"])
        try:
            self._get(api)
        finally:
            with api.log_lock:
                api.in_flight["now"] -= 1

    def _get(self, api: LightApi) -> None:
        split = urlsplit(self.path)
        endpoint = {PROJECTS_PATH: "projects", SESSIONS_PATH: "sessions"}.get(split.path, "other")
        rest = split.path[len(SESSIONS_PATH):] if split.path.startswith(SESSIONS_PATH) else ""
        if rest.endswith("/") and rest[:-1].isdigit():  # GET .../scenario-improvement-sessions/{id}/
            self._detail(api, int(rest[:-1]))
            return
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        project_id = _int_param(params.get("project_id")) if endpoint == "sessions" else None
        page = _int_param(params.get("page", "1")) if endpoint == "sessions" and api.page_size else None
        fault = api.next_fault(endpoint)
        if api.faults.latency_ms:
            time.sleep(api.faults.latency_ms / 1000)
        if fault == "drop":
            self.close_connection = True
            api.record(endpoint, project_id, page, "drop", fault)
            return
        answer = self._answer(api, endpoint, split.path, split.query, params, project_id, fault)
        api.record(endpoint, project_id, page, answer.status, fault)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def _detail(self, api: LightApi, session_id: int) -> None:
        body = api.served.detail_body(session_id) if self.headers.get(API_KEY_HEADER) == api.api_key else None
        answer = Answer(200, body) if body is not None else detail_answer(404, "Not found.")
        api.record("details", session_id, None, answer.status, None)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _answer(self, api: LightApi, endpoint: str, path: str, query: str, params: dict[str, str],
                project_id: int | None, fault: str | None) -> Answer:
        if endpoint == "other":
            return detail_answer(404, "Not found.")
        if self.headers.get(API_KEY_HEADER) != api.api_key:
            return detail_answer(401, "Invalid API key.")
        if fault is not None:
            return status_fault(fault)
        served = api.served
        if endpoint == "projects":
            return Answer(200, served.projects_body())
        if project_id is None or project_id not in served.project_ids:
            return detail_answer(404, "Not found.")
        if api.page_size is None:
            return Answer(200, served.sessions_body(project_id))
        rows = served.sessions(project_id)
        pages = max(1, math.ceil(len(rows) / api.page_size))
        page = _int_param(params.get("page", "1"))
        if page is None or not 1 <= page <= pages:
            return detail_answer(404, "Invalid page.")
        base = f"http://{self.headers.get('Host')}{path}"
        envelope = {"count": len(rows), "next": _page_url(base, query, page + 1) if page < pages else None,
                    "previous": _page_url(base, query, page - 1) if page > 1 else None}
        body = orjson.dumps(envelope)[:-1] + b',"results":' + served.page_results(project_id, page, api.page_size) + b"}"
        return Answer(200, body)


def _page_url(base: str, query: str, page: int) -> str:
    """DRF's replace_query_param / remove_query_param: other params kept, sorted; page 1 has no page."""
    params = parse_qs(query, keep_blank_values=True)
    if page == 1:
        params.pop("page", None)
    else:
        params["page"] = [str(page)]
    return f"{base}?{urlencode(sorted(params.items()), doseq=True)}"
