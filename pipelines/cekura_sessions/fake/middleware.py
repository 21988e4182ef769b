"""Our fault switches around DRF: a WSGI middleware between waitress and Django.

Order of work per request, as a real deployment meets it: the answer is first made by DRF
(authentication, DRF's throttle, routing, paging: a refused or unauthenticated request draws
no fault, as DRF answers it before any view runs); then the latency, and the fault drawn for the
request (fake/faults.py): a dropped connection, a slow or trickled answer, a status from a proxy,
a quirky body; `next` links rewritten as a proxy in front of the app would leave them; and a
listing move after its first page went out (fake/moves.py).
"""

from __future__ import annotations

import time
from http import HTTPStatus
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import orjson

from cekura_sessions.fake.faults import (
    CONTENT_FAULTS,
    STATUS_FAULTS,
    Answer,
    content_fault,
    drifted,
    status_fault,
)
from cekura_sessions.fake.views import SERVED, endpoint_of, int_param

if TYPE_CHECKING:
    from cekura_sessions.fake.server import FakeCekuraApi

INTERNAL_HOST = "web-1.internal:8000"  # the app server's name, as DRF sees it behind a proxy
_RATE_LIMIT_PREFIXES = ("ratelimit-", "x-ratelimit-")


class Dropped(Exception):
    """Raised to the WSGI server: close the connection and send nothing (fake/server.py)."""


class FaultMiddleware:
    """The WSGI application one FakeCekuraApi serves: Django's, with the server's faults."""

    def __init__(self, api: FakeCekuraApi, django_app: Callable[..., Iterable[bytes]]) -> None:
        self.api = api
        self.django_app = django_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        api = self.api
        environ[SERVED] = api.config
        request_path = environ.get("PATH_INFO", "")
        endpoint, session_id = endpoint_of(request_path)
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))  # the last value wins
        # for a detail, the session asked for stands where a listing's project does (faults, the log)
        project_id = int_param(params.get("project_id")) if endpoint == "sessions" else session_id
        page = _page_of(api, endpoint, params)
        if api.faults.next_links == "internal-host":
            environ["HTTP_HOST"] = INTERNAL_HOST
        answer = self._django(environ)
        throttled = answer.status == 429  # DRF's throttle refused it: no fault is drawn
        fault = api.draw_fault(endpoint, project_id) if _faultable(endpoint, answer, environ) else None
        if api.faults.latency_ms:
            time.sleep(api.faults.latency_ms / 1000)
        if fault == "drop":
            api.record(endpoint, project_id, page, "drop", fault)
            raise Dropped
        if fault is not None and fault.startswith("slow:"):
            time.sleep(float(fault[5:]))
        answer = self._faulted(answer, fault, project_id, environ)
        if api.faults.drifts and answer.status == 200 and "json" in answer.content_type:
            all_sessions = [s for _, s in api.dataset.all_sessions()]
            answer = answer._replace(body=drifted(answer.body, endpoint, project_id, api.faults, all_sessions))
        first_page = endpoint == "sessions" and page in (None, 1) and answer.status == 200
        api.record(endpoint, project_id, page, answer.status, "throttle" if throttled else fault)
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body))), *answer.headers]
        start_response(_status_line(answer.status), headers)
        if first_page and api.page_size is not None:
            api.move_listing(project_id)  # once this page is cut: the listing changes under the client
        if fault is not None and fault.startswith("trickle:"):
            return _trickled(answer.body, float(fault[8:]))
        return [answer.body]

    def _django(self, environ: dict[str, Any]) -> Answer:
        """DRF's answer, whole."""
        status: list[str] = []
        headers: list[tuple[str, str]] = []

        def start_response(line: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            status[:] = [line]
            headers[:] = response_headers

        chunks = self.django_app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        kept = tuple((name, value) for name, value in headers if name.lower() not in ("content-type", "content-length"))
        content_type = next((value for name, value in headers if name.lower() == "content-type"), "application/json")
        return Answer(int(status[0].split()[0]), body, content_type=content_type, headers=kept)

    def _faulted(self, answer: Answer, fault: str | None, project_id: int | None, environ: dict[str, Any]) -> Answer:
        if answer.status in (401, 403):
            return answer  # a proxy's status or a quirky body never hides a refused key (the fault is spent)
        if fault is not None and (fault in STATUS_FAULTS or fault.startswith("429")):
            # a proxy's answer in front of the app: the gateway's rate-limit headers stay
            faulted = status_fault(fault)
            return faulted._replace(headers=(*faulted.headers, *_rate_limit_headers(answer)))
        if answer.status != 200 or "json" not in answer.content_type:
            return answer
        links = self.api.faults.next_links
        if fault in CONTENT_FAULTS or links in ("relative", "self"):
            body = orjson.loads(answer.body)
            rows, envelope = (body, None) if isinstance(body, list) else (body.get("results"), body)
            if envelope is not None and links in ("relative", "self"):
                envelope = {**envelope, **_links(envelope, links, environ)}
                answer = answer._replace(body=orjson.dumps(envelope))
            envelope = None if envelope is None else {k: v for k, v in envelope.items() if k != "results"}
            answer = answer._replace(rows=rows, envelope=envelope)
            if fault in CONTENT_FAULTS:
                return content_fault(fault, answer, project_id)
        return answer


def _faultable(endpoint: str, answer: Answer, environ: dict[str, Any]) -> bool:
    """A fault is drawn for a GET to a known endpoint that DRF's throttle did not refuse; for an
    unauthenticated one only the network's faults (drop, slow, trickle) then apply."""
    return endpoint != "other" and answer.status != 429 and environ.get("REQUEST_METHOD") == "GET"


def _page_of(api: FakeCekuraApi, endpoint: str, params: dict[str, str]) -> int | None:
    """The page a sessions request asks for (1-based), None when the listing is not paged or the
    page cannot be told (a cursor past the first page)."""
    if endpoint != "sessions" or api.page_size is None:
        return None
    if api.pagination == "limit_offset":
        limit = int_param(params.get("limit")) or api.page_size
        offset = int_param(params.get("offset", "0"))
        return None if offset is None or limit <= 0 else offset // limit + 1
    if api.pagination == "cursor":
        return 1 if "cursor" not in params else None
    return int_param(params.get("page", "1"))


def _links(envelope: dict[str, Any], style: str, environ: dict[str, Any]) -> dict[str, Any]:
    """`next` and `previous` as a proxy or a misconfigured app leaves them: relative, or `next`
    pointing at the page itself (a loop)."""
    if style == "self":
        if envelope.get("next") is None:
            return {}
        query = environ.get("QUERY_STRING", "")
        return {"next": f"{environ['wsgi.url_scheme']}://{environ['HTTP_HOST']}{environ['PATH_INFO']}"
                        + (f"?{query}" if query else "")}
    relative = {}
    for name in ("next", "previous"):
        link = envelope.get(name)
        if link:
            parts = urlsplit(link)
            relative[name] = urlunsplit(("", "", parts.path, parts.query, ""))
    return relative


def _rate_limit_headers(answer: Answer) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in answer.headers if name.lower().startswith(_RATE_LIMIT_PREFIXES))


def _trickled(body: bytes, seconds_per_byte: float) -> Iterator[bytes]:
    """The headers at once, then the body byte by byte (the server flushes every write)."""
    for index in range(len(body)):
        yield body[index:index + 1]
        time.sleep(seconds_per_byte)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"
