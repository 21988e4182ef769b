"""`cekura-sessions probe`: what a night would meet, asked of the API without writing anything
(no database, no dlt folder): whether the key is accepted, the projects it sees and how many
sessions each has, the pagination the server uses and the page size it grants, the rate-limit
headers it sends, and how many requests a night would need.

It asks the projects list, the first page of each project a night would load, and, on a
limit/offset server, one `next` link (the first page holds the server's default `limit`; only a
followed link shows what it grants). Requests are retried briefly: probe is asked by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cekura_sessions import logs
from cekura_sessions.api import endpoints, pages
from cekura_sessions.api.client import CekuraClient
from cekura_sessions.api.errors import ApiError, FatalApiError, describe_error
from cekura_sessions.api.retry import RetryPolicy
from cekura_sessions.api.transport import Answer
from cekura_sessions.exit_codes import EXIT_FATAL, EXIT_OK
from cekura_sessions.extract.contract import is_integer
from cekura_sessions.run.outcome import fatal_message

# one short retry, never the night's long waits: an unreachable URL is reported within seconds
PROBE_RETRY = RetryPolicy(max_attempts=2, max_wait_seconds=2.0, max_total_wait_seconds=4.0,
                          backoff_initial_seconds=0.5, connect_timeout_seconds=10.0, read_timeout_seconds=30.0,
                          answer_deadline_seconds=60.0, outage_seconds=0.0, time_budget_seconds=60.0)
CONCURRENCY = 4  # first pages asked at once: a probe should not look like a night to the throttle
_RATE_LIMIT_PREFIXES = ("ratelimit-", "x-ratelimit-")


@dataclass(frozen=True)
class Listing:
    """A project's first answer. `kind`: "none" (a bare array), "page_number", "limit_offset",
    "cursor" (from the `next` link's parameters), or "paged" (one page with `count`: either of
    the first two); `sessions`: the array's length or the page's `count` (None: not given);
    `size`: rows in this answer; `error`: why the request failed (the night fails the project)."""

    project_id: int
    name: Any
    kind: str = "none"
    sessions: int | None = None
    size: int = 0
    next_url: str | None = None
    error: str | None = None


def probe(base_url: str, api_key: str, key_origin: str, project_ids: list[int] | None, page_size: int) -> int:
    """Print what the API answers; exit 0, or 2 with the line `run` would print (a refused key,
    an unreachable URL: run/outcome.fatal_message). ConfigError (a bad base URL) is raised."""
    client = CekuraClient(base_url, api_key, policy=PROBE_RETRY, connections=CONCURRENCY, page_size=page_size)
    headers: dict[str, str] = {}
    try:
        projects, answer = client.get(client.base_url + endpoints.PROJECTS_PATH, pages.read_array)
        _rate_limit_headers(answer, headers)
        wanted = project_ids or _active(projects)
        listings = _first_pages(client, wanted, _names(projects), headers)
        granted_link = _limit_offset_grant(client, listings, headers)
    except ApiError as error:  # the projects list failed, or a refused key on a listing
        logs.say(fatal_message(error, client.base_url, key_origin), level="error", exit_code=EXIT_FATAL)
        return EXIT_FATAL
    _print(client, key_origin, projects, wanted, listings, granted_link, headers)
    return EXIT_OK


def _active(projects: list[Any]) -> list[int]:
    """The projects a night loads when no ids are given (extract/source.py's rule)."""
    return [p["id"] for p in projects if isinstance(p, dict) and is_integer(p.get("id")) and not p.get("is_deleted")]


def _names(projects: list[Any]) -> dict[int, Any]:
    return {p["id"]: p.get("name") for p in projects if isinstance(p, dict) and is_integer(p.get("id"))}


def _first_pages(client: CekuraClient, wanted: list[int], names: dict[int, Any],
                 headers: dict[str, str]) -> list[Listing]:
    def first(project_id: int) -> Listing:
        try:
            page, answer = client.get(client.listing_url(project_id), pages.read_first_page)
        except FatalApiError:
            raise
        except ApiError as error:
            return Listing(project_id, names.get(project_id), error=describe_error(error))
        _rate_limit_headers(answer, headers)
        # one answer holds the whole listing: its rows are the count, whatever `count` says
        sessions = page.count if page.next_url else page.size
        return Listing(project_id, names.get(project_id), _kind(answer.content, page), sessions, page.size,
                       page.next_url)

    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="cekura-probe") as pool:
        return list(pool.map(first, wanted))


def _kind(content: bytes, page: pages.Page) -> str:
    if page.count is None and page.next_url is None and content.lstrip()[:1] == b"[":
        return "none"
    if page.next_url:
        query = {name for name, _ in parse_qsl(urlsplit(page.next_url).query)}
        for kind, parameter in (("cursor", "cursor"), ("limit_offset", "offset"), ("page_number", "page")):
            if parameter in query:
                return kind
        return "paged"
    return "cursor" if page.count is None else "paged"  # DRF's CursorPagination alone gives no count


def _limit_offset_grant(client: CekuraClient, listings: list[Listing], headers: dict[str, str]) -> int | None:
    """What a limit/offset server grants on a followed link, asked of the longest listing's
    second page: its size when it has a `next` (a full page), else None (the rest of every
    listing fits in one more page). None too when no listing is limit/offset."""
    paged = [item for item in listings if item.kind == "limit_offset" and item.next_url]
    if not paged:
        return None
    longest = max(paged, key=lambda item: item.sessions or 0)
    page, answer = client.get(client.next_url(longest.next_url or ""), pages.read_later_page)
    _rate_limit_headers(answer, headers)
    return page.size if page.next_url else None


def _rate_limit_headers(answer: Answer, seen: dict[str, str]) -> None:
    for name, value in answer.headers.items():
        if name.lower().startswith(_RATE_LIMIT_PREFIXES):
            seen[name] = value


def requests_needed(listing: Listing, granted: int | None, granted_link: int | None) -> int | None:
    """Requests one project's listing takes a night (None: unknown, no `count`). `granted`: the
    page size of page-number and cursor pages (None: every listing fits one page); `granted_link`:
    limit/offset's on followed links (None: the rest fits one page)."""
    if listing.error or not listing.next_url:
        return 1
    if listing.sessions is None:
        return None
    if listing.kind == "limit_offset":
        rest = max(0, listing.sessions - listing.size)
        return 1 + (math.ceil(rest / granted_link) if granted_link else min(1, rest))
    return max(1, math.ceil(listing.sessions / (granted or listing.size)))


def _print(client: CekuraClient, key_origin: str, projects: list[Any], wanted: list[int], listings: list[Listing],
           granted_link: int | None, headers: dict[str, str]) -> None:
    lines = [f"probe: the API at {client.base_url} accepted the key from {key_origin}; nothing was written",
             f"projects: {len(projects)} seen, {len(wanted)} a night loads"]
    lines += [_project_line(item) for item in listings]
    lines += _others(projects, set(wanted))
    full = [item.size for item in listings if item.next_url and item.kind in ("page_number", "cursor")]
    granted = max(full) if full else None
    lines.append(f"pagination: {_kinds(listings)}")
    lines.append(f"page size: {_page_size_line(listings, granted, granted_link, client.page_size)}")
    shown = "; ".join(f"{name}: {value}" for name, value in sorted(headers.items()))
    lines.append(f"rate-limit headers: {shown or 'none seen'}")
    lines.append(f"requests a night needs: {_requests_line(listings, granted, granted_link)}")
    logs.write("\n".join(lines))


def _project_line(item: Listing) -> str:
    name = json.dumps(item.name, ensure_ascii=False)
    if item.error:
        return f"  {item.project_id}  {name}  fails: {item.error}"
    sessions = f"{item.sessions} sessions" if item.sessions is not None else "sessions unknown (no count)"
    return f"  {item.project_id}  {name}  {sessions}"


def _others(projects: list[Any], wanted: set[int]) -> list[str]:
    lines = []
    for project in projects:
        if isinstance(project, dict) and is_integer(project.get("id")) and project["id"] not in wanted:
            why = "deleted upstream" if project.get("is_deleted") else "not asked for"
            lines.append(f"  {project['id']}  {json.dumps(project.get('name'), ensure_ascii=False)}  not loaded: {why}")
    return lines


def _kinds(listings: Iterable[Listing]) -> str:
    kinds = {item.kind for item in listings if not item.error}
    if not kinds:
        return "unknown (no listing answered)"
    if kinds == {"paged"}:
        return "paged, page_number or limit_offset (every listing fits one page)"
    return ", ".join(sorted(kinds - {"paged"} if len(kinds) > 1 else kinds))


def _page_size_line(listings: list[Listing], granted: int | None, granted_link: int | None, asked: int) -> str:
    if any(item.kind == "limit_offset" for item in listings):
        first = max(item.size for item in listings if item.kind == "limit_offset")
        link = f"{granted_link} granted" if granted_link else "at least the rest of every listing"
        return f"{link} on `next` links (asked {asked}); first pages hold the server's default limit, {first}"
    if granted is not None:
        return f"{granted} granted (asked {asked})"
    sizes = [item.size for item in listings if not item.error]
    largest = max(sizes) if sizes else 0
    return f"every listing fits one answer (the largest holds {largest}; asked {asked})"


def _requests_line(listings: list[Listing], granted: int | None, granted_link: int | None) -> str:
    needed = [requests_needed(item, granted, granted_link) for item in listings]
    known = sum(n for n in needed if n is not None)
    unknown = sum(1 for n in needed if n is None)
    if unknown:
        return f"unknown (no count for {unknown} project(s)); at least {1 + known + 2 * unknown}"
    return f"{1 + known} (1 projects list + {known} listing requests)"
