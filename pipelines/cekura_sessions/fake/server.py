"""The faithful fake Cekura API: a real HTTP server on loopback, with fault switches.

It answers the two endpoints the pipeline reads, exactly as ``cekura-api/openapi-subset.json``
describes them (projects with nested members and emails; sessions as delivered, oddities and
all), plus the shapes the contract says to expect from Cekura's other list endpoints (DRF
pagination). Faults are scripted per endpoint, pinned to a project, or drawn at random from a
seeded generator, so a test can say exactly which request fails and how.

Order of work per request: DRF's throttle (for a request with the right key to a known path, as
DRF authenticates and routes before it throttles; a refused request draws no fault), latency,
network faults (``drop``, ``slow:<s>``; ``trickle:<s>`` sends the headers, then the body a byte
every <s> seconds), routing of unknown paths (404), auth (401), status and content faults, then
the normal answer.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import SplitResult, parse_qs, parse_qsl, urlencode, urlsplit

import orjson

from cekura_sessions.api.endpoints import API_KEY_HEADER, PROJECTS_PATH, SESSIONS_PATH
from cekura_sessions.fake.data import FakeDataset
from cekura_sessions.fake.faults import (  # noqa: F401 - Faults, bad_rows and the fault names are the fake's face
    CONTENT_FAULTS,
    STATUS_FAULTS,
    Answer,
    Faults,
    bad_rows,
    content_fault,
    detail_answer,
    json_answer,
    status_fault,
    validate_fault,
)
from cekura_sessions.fake.moves import moved
from cekura_sessions.fake.throttle import SlidingWindowThrottle, Verdict

log = logging.getLogger(__name__)


# DRF's two paging classes: PageNumberPagination (`page`, `page_size`; 404 "Invalid page." past
# the end) and LimitOffsetPagination (`limit`, `offset`; an empty page past the end)
PAGINATIONS = ("page_number", "limit_offset")


class RequestRecord(NamedTuple):
    endpoint: str  # "projects" / "sessions" / "other"
    project_id: int | None
    page: int | None
    status: int | str  # HTTP status, or "drop"
    fault: str | None
    at: float  # time.monotonic() when the answer went out


def _int_param(value: str | None) -> int | None:
    """Django-style integer parsing: surrounding whitespace allowed, anything else is None."""
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class _Served:
    """One dataset and the encoded bodies cut from it; replaced whole when the dataset changes.

    Swapping one object keeps a request that is already running consistent: it reads either the
    old dataset and its bodies, or the new ones, never a mix.
    """

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

    def projects_body(self, organization_id: int | None) -> bytes:
        return self._cached(("projects", organization_id), lambda: self.projects(organization_id))

    def projects(self, organization_id: int | None) -> list[dict]:
        if organization_id is None:
            return self.dataset.projects
        return [p for p in self.dataset.projects if (p.get("organization") or {}).get("id") == organization_id]

    def sessions(self, project_id: int) -> list[dict]:
        return self.dataset.sessions.get(project_id, [])

    def sessions_body(self, project_id: int) -> bytes:
        return self._cached(("sessions", project_id), lambda: self.sessions(project_id))

    def page_results(self, project_id: int, page: int, page_size: int) -> bytes:
        start = (page - 1) * page_size
        return self._cached(
            ("page", project_id, page, page_size), lambda: self.sessions(project_id)[start : start + page_size]
        )


class FakeCekuraApi:
    """The fake API server; ``with FakeCekuraApi(dataset) as api: requests.get(api.url + ...)``."""

    def __init__(
        self,
        dataset: FakeDataset,
        api_key: str = "test-key",
        page_size: int | None = None,
        faults: Faults | None = None,
        pagination: str = "page_number",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.page_size = page_size
        if pagination not in PAGINATIONS:
            raise ValueError(f"unknown pagination {pagination!r}; one of {', '.join(PAGINATIONS)}")
        self.pagination = pagination
        self.requests_log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._fault_lock = threading.Lock()
        self._served = _Served(dataset)
        self.faults = faults or Faults()
        # Bind now so url is known before start(); serving starts in start().
        self._server = _Server((host, port), _Handler, self)
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # --- state that tests swap -----------------------------------------------------------------

    @property
    def dataset(self) -> FakeDataset:
        return self._served.dataset

    @dataset.setter
    def dataset(self, dataset: FakeDataset) -> None:
        self._served = _Served(dataset)

    def invalidate_cache(self) -> None:
        """Re-encode bodies from the current dataset (after mutating it in place)."""
        self._served = _Served(self._served.dataset)

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._fault_lock:
            self._faults = faults
            self._rng = random.Random(faults.random_seed)
            # a fresh window with every switch: a test starts from a throttle nobody has used
            self._throttle = (SlidingWindowThrottle(faults.throttle, faults.throttle_headers)
                              if faults.throttle else None)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeCekuraApi:
        if self._thread is None:
            # A short poll keeps stop() quick: shutdown() waits for the loop's next poll.
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-cekura-api", daemon=True
            )
            self._thread.start()
            log.debug("fake Cekura API serving at %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        # Keep-alive connections outlive the listening socket; end them so clients see it.
        self._server.close_connections()

    def __enter__(self) -> FakeCekuraApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request log ---------------------------------------------------------------------------

    def request_count(self, endpoint: str | None = None, project_id: int | None = None) -> int:
        with self._log_lock:
            return sum(
                1
                for r in self.requests_log
                if (endpoint is None or r.endpoint == endpoint) and (project_id is None or r.project_id == project_id)
            )

    def reset_log(self) -> None:
        with self._log_lock:
            self.requests_log.clear()

    def _move_listing(self, project_id: int) -> None:
        """After a page-1 answer of `project_id` went out: apply its next scripted move."""
        with self._fault_lock:
            script = self._faults.moves.get(project_id)
            if not script:
                return
            move = script.pop(0)
            self._served = _Served(moved(self._served.dataset, project_id, move, self.page_size or 1))

    def _record(self, endpoint: str, project_id: int | None, page: int | None, status: int | str, fault: str | None) -> None:
        with self._log_lock:
            self.requests_log.append(RequestRecord(endpoint, project_id, page, status, fault, time.monotonic()))

    # --- faults --------------------------------------------------------------------------------

    def _throttled(self, endpoint: str, key: str | None) -> Verdict | None:
        """The throttle's verdict on a request with the right key to a known path; None when no
        throttle is on or the request never reaches it (DRF answers 404 and 401 first)."""
        throttle = self._throttle
        if throttle is None or endpoint == "other" or key != self.api_key:
            return None
        return throttle.check(key)

    def _next_fault(self, endpoint: str, project_id: int | None) -> str | None:
        """The fault for this request: scripted, then always, then random."""
        if endpoint == "other":
            return None
        with self._fault_lock:
            faults = self._faults
            # Draw for every request so the random sequence does not depend on the script.
            draw, kind_draw = self._rng.random(), self._rng.random()
            script = faults.script.get((endpoint, project_id if endpoint == "sessions" else None))
            if script:
                return script.pop(0)
            if endpoint == "sessions" and project_id in faults.always:
                return faults.always[project_id]
            if draw < faults.rate_limit_rate:
                return "429"
            if draw < faults.rate_limit_rate + faults.random_rate and faults.random_kinds:
                return faults.random_kinds[int(kind_draw * len(faults.random_kinds))]
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: FakeCekuraApi) -> None:
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
        # A client that hangs up mid-answer (timeouts, drops) is normal here, not a traceback.
        log.debug("fake API connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive + Nagle stalls every answer ~40 ms (GOTCHAS.md)
    server_version = "FakeCekura/1.0"
    timeout = 120  # idle keep-alive connections end eventually
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def version_string(self) -> str:
        return self.server_version

    # --- routing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._discard_body()
        api = self.server.api
        split = urlsplit(self.path)
        endpoint = {PROJECTS_PATH: "projects", SESSIONS_PATH: "sessions"}.get(split.path, "other")
        # Django's QueryDict returns the last value of a repeated parameter.
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        project_id = _int_param(params.get("project_id")) if endpoint == "sessions" else None
        page = self._page_of(endpoint, params)
        verdict = api._throttled(endpoint, self.headers.get(API_KEY_HEADER))
        refused = verdict is not None and not verdict.allowed
        fault = None if refused else api._next_fault(endpoint, project_id)
        latency = api.faults.latency_ms
        if latency:
            time.sleep(latency / 1000)
        if refused:
            answer = detail_answer(429, _throttled_detail(verdict.wait), verdict.headers)
            api._record(endpoint, project_id, page, answer.status, "throttle")
            self._send(answer)
            return
        if fault == "drop":
            self.close_connection = True
            api._record(endpoint, project_id, page, "drop", fault)
            return
        if fault is not None and fault.startswith("slow:"):
            time.sleep(float(fault[5:]))
        answer = self._answer(endpoint, split, params, project_id, fault)
        if verdict is not None:
            answer = answer._replace(headers=(*answer.headers, *verdict.headers))
        # logged before it is sent: a client that has its answer finds it in the log
        api._record(endpoint, project_id, page, answer.status, fault)
        self._send(answer, float(fault[8:]) if fault and fault.startswith("trickle:") else None)

    def _not_allowed(self) -> None:
        self._discard_body()
        path = urlsplit(self.path).path
        if path in (PROJECTS_PATH, SESSIONS_PATH):
            answer = detail_answer(405, f'Method "{self.command}" not allowed.', (("Allow", "GET"),))
        else:
            answer = detail_answer(404, "Not found.")
        endpoint = {PROJECTS_PATH: "projects", SESSIONS_PATH: "sessions"}.get(path, "other")
        self.server.api._record(endpoint, None, None, answer.status, None)
        self._send(answer)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _not_allowed

    def _page_of(self, endpoint: str, params: dict[str, str]) -> int | None:
        api = self.server.api
        if endpoint != "sessions" or api.page_size is None:
            return None
        if api.pagination == "limit_offset":
            limit, offset = _int_param(params.get("limit")) or api.page_size, _int_param(params.get("offset", "0"))
            return None if offset is None or limit <= 0 else offset // limit + 1
        return _int_param(params.get("page", "1"))

    def _answer(
        self, endpoint: str, split: SplitResult, params: dict[str, str], project_id: int | None, fault: str | None
    ) -> Answer:
        api = self.server.api
        if endpoint == "other":
            return detail_answer(404, "Not found.")
        if self.headers.get(API_KEY_HEADER) != api.api_key:
            return detail_answer(401, "Invalid API key.")
        if fault is not None and (fault in STATUS_FAULTS or fault.startswith("429")):
            return status_fault(fault)
        served = api._served
        if endpoint == "projects":
            answer = self._projects(served, params)
        else:
            answer = self._sessions(served, split, params, project_id)
        if fault in CONTENT_FAULTS and answer.status == 200:
            return content_fault(fault, answer, project_id)
        return answer

    # --- endpoints -----------------------------------------------------------------------------

    def _projects(self, served: _Served, params: dict[str, str]) -> Answer:
        # The spec's only filter; the list is never paginated ("There is no pagination").
        org_param = params.get("organization_id")
        organization_id = _int_param(org_param)
        if org_param is not None and organization_id is None:
            return json_answer(400, {"organization_id": ["A valid integer is required."]})
        return Answer(200, served.projects_body(organization_id), rows=served.projects(organization_id))

    def _sessions(
        self, served: _Served, split: SplitResult, params: dict[str, str], project_id: int | None
    ) -> Answer:
        if project_id is None:
            return detail_answer(400, "project_id is required")
        if project_id not in served.project_ids:
            return detail_answer(404, "Not found.")
        api = self.server.api
        if api.page_size is None:
            return Answer(200, served.sessions_body(project_id), rows=served.sessions(project_id))
        if api.pagination == "limit_offset":
            answer, first = self._limit_offset(served, split, params, project_id, api.page_size)
        else:
            answer, first = self._paginated(served, split, params, project_id, api.page_size)
        if first and answer.status == 200:
            api._move_listing(project_id)  # once this page is cut: the listing changes under the client
        return answer

    def _paginated(
        self, served: _Served, split: SplitResult, params: dict[str, str], project_id: int, default_size: int
    ) -> tuple[Answer, bool]:
        """DRF PageNumberPagination: 1-based ``page``, client ``page_size``, absolute next/previous.
        Returns the answer and whether it is the first page."""
        requested = _int_param(params.get("page_size"))
        size = requested if requested is not None and requested > 0 else default_size
        rows = served.sessions(project_id)
        pages = max(1, math.ceil(len(rows) / size))
        page = _int_param(params.get("page", "1"))
        if page is None or not 1 <= page <= pages:
            return detail_answer(404, "Invalid page."), False
        base, links = self._link_base(split)
        envelope = {
            "count": len(rows),
            "next": _page_url(base, split.query, page if links == "self" else page + 1) if page < pages else None,
            "previous": _page_url(base, split.query, page - 1) if page > 1 else None,
        }
        results = served.page_results(project_id, page, size)
        body = orjson.dumps(envelope)[:-1] + b',"results":' + results + b"}"
        start = (page - 1) * size
        return Answer(200, body, rows=rows[start : start + size], envelope=envelope), page == 1

    def _limit_offset(
        self, served: _Served, split: SplitResult, params: dict[str, str], project_id: int, default_limit: int
    ) -> tuple[Answer, bool]:
        """DRF LimitOffsetPagination: ``limit`` (default the page size), 0-based ``offset``; past
        the end an empty page, never a 404. Returns the answer and whether it is the first page."""
        limit = _int_param(params.get("limit"))
        limit = limit if limit is not None and limit > 0 else default_limit
        offset = _int_param(params.get("offset", "0"))
        offset = offset if offset is not None and offset >= 0 else 0
        rows = served.sessions(project_id)
        base, links = self._link_base(split)
        at = offset if links == "self" else offset + limit
        envelope = {
            "count": len(rows),
            "next": _query_url(base, split.query, {"limit": limit, "offset": at}) if offset + limit < len(rows) else None,
            "previous": _query_url(base, split.query, {"limit": limit, "offset": max(0, offset - limit)}) if offset else None,
        }
        page = rows[offset : offset + limit]
        return Answer(200, orjson.dumps({**envelope, "results": page}), rows=page, envelope=envelope), offset == 0

    def _link_base(self, split: SplitResult) -> tuple[str, str]:
        """Where `next` links point (Faults.next_links says how DRF builds them), and the style."""
        links = self.server.api.faults.next_links
        host = "web-1.internal:8000" if links == "internal-host" else self.headers.get("Host") or self.server.api.url[7:]
        return (split.path if links == "relative" else f"http://{host}{split.path}"), links

    # --- writing -------------------------------------------------------------------------------

    def _send(self, answer: Answer, seconds_per_byte: float | None = None) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if seconds_per_byte is None:
            self.wfile.write(answer.body)
            return
        for index in range(len(answer.body)):  # the headers at once, then the body byte by byte
            self.wfile.write(answer.body[index:index + 1])
            self.wfile.flush()
            time.sleep(seconds_per_byte)

    def _discard_body(self) -> None:
        length = _int_param(self.headers.get("Content-Length"))
        if length:
            self.rfile.read(length)


def _query_url(base: str, query: str, replace: dict[str, int]) -> str:
    """DRF's replace_query_param for several params: the others kept, all sorted."""
    params = parse_qs(query, keep_blank_values=True)
    params.update({name: [str(value)] for name, value in replace.items()})
    return f"{base}?{urlencode(sorted(params.items()), doseq=True)}"


def _throttled_detail(wait: float) -> str:
    seconds = math.ceil(wait)
    return f"Request was throttled. Expected available in {seconds} second{'' if seconds == 1 else 's'}."


def _page_url(base: str, query: str, page: int) -> str:
    """DRF's replace_query_param / remove_query_param: other params kept, sorted; page 1 has no page."""
    params = parse_qs(query, keep_blank_values=True)
    if page == 1:
        params.pop("page", None)
    else:
        params["page"] = [str(page)]
    return f"{base}?{urlencode(sorted(params.items()), doseq=True)}"


