"""The fake Cekura API: a Django REST framework app (fake/views.py) served by waitress on
loopback, with our fault switches around it (fake/middleware.py).

It answers the endpoints the pipeline reads, exactly as Cekura's API describes them
(docs/upstream-behaviour.md) (projects with nested members and emails; sessions as delivered, oddities and
all), either as the spec's bare array or paged by one of DRF's own pagination classes, with
DRF's own authentication answers (401 with a challenge, or DRF's default 403), throttle
(`SimpleRateThrottle` over a cache every thread shares) and error bodies. Faults are scripted per
endpoint, pinned to a project, or drawn at random from a seeded generator, so a test can say
exactly which request fails and how.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from cekura_sessions.fake.app import django_application
from cekura_sessions.fake.data import FakeDataset
from cekura_sessions.fake.faults import (  # noqa: F401 - Faults, bad_rows and the fault names are the fake's face
    CONTENT_FAULTS,
    STATUS_FAULTS,
    Faults,
    bad_rows,
    validate_fault,
)
from cekura_sessions.fake.moves import moved

log = logging.getLogger(__name__)

# DRF's paging classes: PageNumberPagination (`page`, 404 "Invalid page." past the end),
# LimitOffsetPagination (`limit`, `offset`; an empty page past the end) and CursorPagination
# (an opaque `cursor`, no `count`)
PAGINATIONS = ("page_number", "limit_offset", "cursor")
AUTH_STYLES = ("401", "403")
_servers = itertools.count(1)


class RequestRecord(NamedTuple):
    endpoint: str  # "projects" / "sessions" / "details" / "other"
    project_id: int | None  # for "details": the session id asked for
    page: int | None
    status: int | str  # HTTP status, or "drop"
    fault: str | None  # the fault drawn, or "throttle" for DRF's 429
    at: float  # time.monotonic() when the answer went out


class _Served:
    """One dataset, replaced whole when it changes: a request that is already running reads
    either the old dataset or the new one, never a mix."""

    def __init__(self, dataset: FakeDataset) -> None:
        from cekura_sessions.fake import store

        self.dataset = dataset
        self.generation = store.new_generation()  # the cursor's copy of these rows (fake/store.py)
        self.project_ids = {p.get("id") for p in dataset.projects}
        self._by_id: dict[Any, dict] | None = None
        self._index_lock = threading.Lock()

    def projects(self, organization_id: int | None) -> list[dict]:
        if organization_id is None:
            return self.dataset.projects
        return [p for p in self.dataset.projects if (p.get("organization") or {}).get("id") == organization_id]

    def sessions(self, project_id: int) -> list[dict]:
        return self.dataset.sessions.get(project_id, [])

    def detail(self, session_id: int) -> dict | None:
        """The detail endpoint's answer (FakeDataset.detail_of), None for a 404; the index by id
        is built by the first detail asked of this dataset."""
        with self._index_lock:
            if self._by_id is None:
                self._by_id = {s.get("id"): s for rows in self.dataset.sessions.values() for s in rows}
        return self.dataset.detail_of(self._by_id.get(session_id))


class FakeCekuraApi:
    """The fake API server; ``with FakeCekuraApi(dataset) as api: requests.get(api.url + ...)``.

    `page_size`: None answers the sessions list as a bare JSON array; else DRF pages of that size
    by `pagination` (PAGINATIONS). `max_page_size`: None gives the paging class no
    `page_size_query_param` (a client's `page_size` is ignored); N lets a client ask for up to N
    (`page_size`, or `limit` up to N with limit/offset). `auth`: "401" answers a bad key with 401
    and a challenge, "403" as DRF does when the authentication class sends none. `clock`: the
    throttle's timer in seconds (time.time; a scaled clock in tests)."""

    def __init__(
        self,
        dataset: FakeDataset,
        api_key: str = "test-key",
        page_size: int | None = None,
        faults: Faults | None = None,
        pagination: str = "page_number",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_page_size: int | None = None,
        auth: str = "401",
        clock: Callable[[], float] = time.time,
        threads: int = 32,
    ) -> None:
        django_app = django_application()  # Django is configured before DRF is imported
        from cekura_sessions.fake.middleware import FaultMiddleware
        from cekura_sessions.fake.views import ServerConfig

        if pagination not in PAGINATIONS:
            raise ValueError(f"unknown pagination {pagination!r}; one of {', '.join(PAGINATIONS)}")
        if auth not in AUTH_STYLES:
            raise ValueError(f"unknown auth style {auth!r}; one of {', '.join(AUTH_STYLES)}")
        self.api_key = api_key
        self.page_size = page_size
        self.pagination = pagination
        self.clock = clock
        self.requests_log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._fault_lock = threading.Lock()
        self._id = next(_servers)
        self._throttles = itertools.count(1)
        self.config = ServerConfig(api_key=api_key, served=_Served(dataset), page_size=page_size,
                                   pagination=pagination, max_page_size=max_page_size, auth=auth)
        self.faults = faults or Faults()
        self._threads = threads
        self._wsgi = FaultMiddleware(self, django_app)
        self._server = self._bind(host, port)  # bound now, so url is known before start()
        self.host, self.port = host, int(self._server.effective_port)
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # --- state that tests swap -----------------------------------------------------------------

    @property
    def dataset(self) -> FakeDataset:
        return self.config.served.dataset

    @dataset.setter
    def dataset(self, dataset: FakeDataset) -> None:
        self.config.served = _Served(dataset)

    def invalidate_cache(self) -> None:
        """Serve the current dataset afresh (after mutating it in place)."""
        self.config.served = _Served(self.config.served.dataset)

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        from cekura_sessions.fake.views import make_throttle

        with self._fault_lock:
            self._faults = faults
            self._rng = random.Random(faults.random_seed)
            # a fresh window with every switch: a test starts from a throttle nobody has used
            self.config.throttle = (make_throttle(faults.throttle, f"fake{self._id}-{next(self._throttles)}", self.clock)
                                    if faults.throttle else None)
            self.config.throttle_headers = faults.throttle_headers

    # --- lifecycle -----------------------------------------------------------------------------

    def _bind(self, host: str, port: int) -> Any:
        from cekura_sessions.fake.wsgi_server import create_server

        return create_server(self._wsgi, host, port, self._threads)

    def start(self) -> FakeCekuraApi:
        if self._thread is None:
            if self._server is None:  # started again after stop(): the same port
                self._server = self._bind(self.host, self.port)
            self._thread = threading.Thread(target=self._server.run, name="fake-cekura-api", daemon=True)
            self._thread.start()
            log.debug("fake Cekura API serving at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop listening and end every connection, keep-alive ones included, so clients see it."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

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

    def record(self, endpoint: str, project_id: int | None, page: int | None, status: int | str,
               fault: str | None) -> None:
        """Logged before the answer is sent: a client that has its answer finds it in the log."""
        with self._log_lock:
            self.requests_log.append(RequestRecord(endpoint, project_id, page, status, fault, time.monotonic()))

    # --- faults --------------------------------------------------------------------------------

    def move_listing(self, project_id: int | None) -> None:
        """After a first-page answer of `project_id` went out: apply its next scripted move."""
        with self._fault_lock:
            script = self._faults.moves.get(project_id)
            if not script:
                return
            move = script.pop(0)
            self.config.served = _Served(moved(self.config.served.dataset, project_id, move, self.page_size or 1))

    def draw_fault(self, endpoint: str, project_id: int | None) -> str | None:
        """The fault for this request: scripted, then always, then random."""
        with self._fault_lock:
            faults = self._faults
            # Draw for every request so the random sequence does not depend on the script.
            draw, kind_draw = self._rng.random(), self._rng.random()
            # a listing's faults are scripted per project, a detail's per session or for any
            script = faults.script.get((endpoint, project_id if endpoint in ("sessions", "details") else None))
            if not script and endpoint == "details":
                script = faults.script.get((endpoint, None))
            if script:
                return script.pop(0)
            if endpoint == "sessions" and project_id in faults.always:
                return faults.always[project_id]
            if draw < faults.rate_limit_rate:
                return "429"
            if draw < faults.rate_limit_rate + faults.random_rate and faults.random_kinds:
                return faults.random_kinds[int(kind_draw * len(faults.random_kinds))]
        return None
