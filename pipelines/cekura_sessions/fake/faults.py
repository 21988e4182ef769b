"""The fake API's fault switches: what real servers do that the spec does not say, each one a
named fault that a test (or `cekura-sessions fake-api`) can script, pin to a project or draw
at random; and the answer each fault gives."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from cekura_sessions.fake.moves import validate_move
from cekura_sessions.fake.throttle import HEADER_STYLES, parse_rate

STATUS_FAULTS = ("500", "502", "503", "408", "403", "404")
CONTENT_FAULTS = ("truncated", "html", "object", "no_results", "bad_rows", "gzip_lie")
# how DRF's `next` links look: as DRF builds them from the request's Host, relative, pointing at
# the page itself (a loop), or naming the app server behind a TLS-terminating proxy
NEXT_LINKS = ("absolute", "relative", "self", "internal-host")
BAD_ROW_ID_BASE = 900_000_000  # ids of bad_rows rows: far above anything fake_data hands out

_ERROR_DETAIL = {
    "500": "A server error occurred.",
    "502": "Bad gateway.",
    "503": "Service temporarily unavailable.",
    "408": "Request timeout.",
    "403": "You do not have permission to perform this action.",
    "404": "Not found.",
    "429": "Request was throttled. Expected available in 1 second.",
}
_HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n"


def validate_fault(fault: str) -> str:
    """The fault itself if it is one this server knows, else ValueError."""
    if fault in STATUS_FAULTS or fault in CONTENT_FAULTS or fault in ("429", "drop"):
        return fault
    if fault.startswith("429:"):
        return fault
    for prefix in ("slow:", "trickle:"):  # slow: seconds before answering; trickle: seconds per body byte
        if fault.startswith(prefix):
            try:
                if float(fault[len(prefix):]) >= 0:
                    return fault
            except ValueError:
                pass
    raise ValueError(f"unknown fault {fault!r}")


@dataclass
class Faults:
    # deterministic scripted faults: key is ("projects", None) or ("sessions", project_id); each
    # request to that endpoint consumes the next fault in the list, then answers normally
    script: dict[tuple[str, int | None], list[str]] = field(default_factory=dict)
    always: dict[int, str] = field(default_factory=dict)  # project_id -> fault on every sessions request
    random_rate: float = 0.0  # share of requests (both endpoints) that get a random fault from random_kinds
    random_kinds: tuple[str, ...] = ("500", "502", "503", "drop")
    random_seed: int = 1
    latency_ms: float = 0.0  # added to every answer
    rate_limit_rate: float = 0.0  # share of requests (both endpoints) answered 429 with Retry-After 1
    # DRF's throttle, a sliding window per key (fake/throttle.py): a rate such as "10/s" or
    # "100/min", None for none; and which rate-limit headers the answers carry (HEADER_STYLES)
    throttle: str | None = None
    throttle_headers: str = "none"
    next_links: str = "absolute"  # one of NEXT_LINKS, for paginated answers
    # project_id -> listing moves (fake/moves.py MOVES), one applied after each page-1 answer
    # of that project goes out, until the list is used up
    moves: dict[int, list[str]] = field(default_factory=dict)
    # drift: what an API does to its bodies without a version change (applied by `drifted`)
    string_ids: bool = False  # every `id` and `project` sent as a string ("42"), both endpoints
    raw_byte_projects: tuple[int, ...] = ()  # these listings' first title carries a raw 0xE9 byte
    nan_field: bool = False  # every session gains a field the spec does not list: a bare NaN
    ignore_project_filter: bool = False  # the sessions list answers every project's sessions
    empty_listings: tuple[int, ...] = ()  # these projects' listings answer an empty list
    hidden_projects: tuple[int, ...] = ()  # the projects list leaves these out

    @property
    def drifts(self) -> bool:
        return bool(self.string_ids or self.raw_byte_projects or self.nan_field or self.ignore_project_filter
                    or self.empty_listings or self.hidden_projects)

    def __post_init__(self) -> None:
        for project_moves in self.moves.values():
            for move in project_moves:
                validate_move(move)
        for faults in self.script.values():
            for fault in faults:
                validate_fault(fault)
        for fault in (*self.always.values(), *self.random_kinds):
            validate_fault(fault)
        if self.throttle is not None:
            parse_rate(self.throttle)
        if self.throttle_headers not in HEADER_STYLES:
            raise ValueError(f"unknown throttle_headers {self.throttle_headers!r}; one of {', '.join(HEADER_STYLES)}")
        if self.next_links not in NEXT_LINKS:
            raise ValueError(f"unknown next_links {self.next_links!r}; one of {', '.join(NEXT_LINKS)}")


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    rows: list[Any] | None = None  # the list behind a 200 answer (for content faults)
    envelope: dict[str, Any] | None = None  # pagination fields of a paginated 200 answer


def json_answer(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, orjson.dumps(payload), headers=headers)


def detail_answer(status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return json_answer(status, {"detail": detail}, headers)


def status_fault(fault: str) -> Answer:
    if fault.startswith("429"):
        retry_after = fault[4:] if fault.startswith("429:") else "1"
        if retry_after == "http-date":
            # Whole seconds only: +2 s lands 1-2 s ahead once the fraction is cut off.
            retry_after = email.utils.formatdate(time.time() + 2, usegmt=True)
        return detail_answer(429, _ERROR_DETAIL["429"], (("Retry-After", retry_after),))
    return detail_answer(int(fault), _ERROR_DETAIL[fault])


def content_fault(fault: str, answer: Answer, project_id: int | None) -> Answer:
    if fault == "gzip_lie":  # labelled gzip, sent plain (a misconfigured proxy)
        return answer._replace(headers=(*answer.headers, ("Content-Encoding", "gzip")))
    if fault == "truncated":
        return Answer(200, answer.body[: len(answer.body) // 2])
    if fault == "html":
        return Answer(200, _HTML_PAGE, content_type="text/html; charset=utf-8")
    if fault == "object":
        return json_answer(200, {"detail": "ok"})
    rows = answer.rows or []
    if fault == "no_results":
        return json_answer(200, {"count": len(rows), "next": None, "previous": None})
    bad = bad_rows(project_id)
    if answer.envelope is not None:
        return json_answer(200, {**answer.envelope, "results": bad + rows})
    return json_answer(200, bad + rows)


def bad_rows(project_id: int | None) -> list[dict]:
    """Rows that break the contract, served by the ``bad_rows`` fault ahead of the normal rows."""
    template = {
        "id": BAD_ROW_ID_BASE,
        "title": "bad row",
        "project": project_id,
        "scenario_ids": [1],
        "status": "completed",
        "created_at": "2026-09-02T00:00:00Z",
        "updated_at": "2026-09-02T00:10:00Z",
        "message_count": 3,
    }
    no_id = {k: v for k, v in template.items() if k != "id"}
    return [
        no_id,
        {**template, "id": "abc"},
        {**template, "id": BAD_ROW_ID_BASE + 1, "created_at": "not a date"},
        {**template, "id": BAD_ROW_ID_BASE + 2, "scenario_ids": "1,2,3"},
        {**template, "id": BAD_ROW_ID_BASE + 3, "scenario_ids": [1, {"x": 2}]},
    ]


NAN_FIELD = "score"  # the field the nan_field drift adds
_RAW_BYTE_MARK = "@@raw-e9@@"  # stands for the raw byte until the body is bytes


def drifted(body: bytes, endpoint: str, project_id: int | None, faults: Faults, all_sessions: list[dict]) -> bytes:
    """A 200 JSON body as a drifting API writes it. `all_sessions`: every project's sessions (for
    an ignored filter). A bare NaN and a raw byte are written as bytes: DRF's renderer refuses
    NaN, and no JSON encoder writes invalid UTF-8."""
    payload = orjson.loads(body)
    rows = payload if isinstance(payload, list) else payload.get("results")
    if not isinstance(rows, list):
        return body
    if endpoint == "projects" and faults.hidden_projects:
        rows[:] = [p for p in rows if p.get("id") not in faults.hidden_projects]
    if endpoint == "sessions":
        if project_id in faults.empty_listings:
            rows[:] = []
        elif faults.ignore_project_filter:
            rows[:] = [dict(s) for s in all_sessions]
        if project_id in faults.raw_byte_projects and rows:
            rows[0] = {**rows[0], "title": f"Caf{_RAW_BYTE_MARK} {rows[0].get('title')}"}
        if faults.nan_field:
            rows[:] = [{**s, NAN_FIELD: float("nan")} for s in rows]
    if faults.string_ids:
        rows[:] = [{**r, **{k: str(r[k]) for k in ("id", "project") if type(r.get(k)) is int}} for r in rows]
    # Python's json writes NaN bare unless told otherwise (what a non-DRF renderer sends)
    text = json.dumps(payload)
    return text.encode().replace(_RAW_BYTE_MARK.encode(), b"\xe9")
