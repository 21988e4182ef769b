"""Cekura's API: the key in its header, every answer classified (api/responses.py), retried
by one policy (api/retry.py), and a listing's pages followed to the end.

The client knows nothing of what is stored: it returns what the API said and a digest of the
answer bytes; the source decides whether a listing changed. Retries live here and only here;
the transport never retries, so attempts are never multiplied by a second layer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from cekura_sessions import settings
from cekura_sessions.api import endpoints, pages
from cekura_sessions.api.errors import (
    ConfigError,
    ListingMoved,
    MalformedBody,
    NotFound,
    ProjectError,
    Unreachable,
    Untrusted,
)
from cekura_sessions.api.clock import REAL_TIME, Clock
from cekura_sessions.api.pacing import Pacer, Throttle
from cekura_sessions.api.responses import classify_response
from cekura_sessions.api.retry import RequestStats, RetryPolicy, retrying
from cekura_sessions.api.transport import Answer, ConnectionFailed, Transport, UndecodableBody
from cekura_sessions.api.urls import check_base_url, on_api_root, with_limit

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class SessionListing:
    """One project's sessions as the API delivered them, every page read and checked.

    `contents`: each answer's bytes, in page order (pages.page_rows reads one's rows);
    `digest`: blake2b-128 hex of those bytes in order, so equal bytes mean an unchanged listing;
    `sessions`: how many rows the answers hold; `pages`: how many answers (1: one consistent
    snapshot; more: read over several requests, while the listing could change)."""

    contents: tuple[bytes, ...] = field(repr=False)
    digest: str
    sessions: int
    pages: int = 1


class CekuraClient:
    """One client per run; safe to share between worker threads. `page_size`: rows asked for per
    page of a listing (1..endpoints.MAX_PAGE_SIZE); a server grants up to its own maximum, and one
    that takes no page size from clients answers its own. `throttle`: the API's throttle as an
    earlier night learned it (api/pacing.py), paced to from the first request; `clock`: the time
    the pacing runs on (a scaled one in tests)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        policy: RetryPolicy | None = None,
        stats: RequestStats | None = None,
        connections: int = settings.DEFAULT_CONCURRENCY,
        page_size: int = endpoints.DEFAULT_PAGE_SIZE,
        throttle: Throttle | None = None,
        clock: Clock = REAL_TIME,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError("the API key is empty; set CEKURA_API_KEY")
        if any(ord(c) < 32 or ord(c) == 127 for c in api_key.strip()):
            # http.client would refuse it with an error that quotes the whole header
            raise ConfigError("the API key contains control characters; check CEKURA_API_KEY")
        self.base_url = check_base_url(base_url)
        if type(page_size) is not int or not 1 <= page_size <= endpoints.MAX_PAGE_SIZE:
            raise ConfigError(f"the page size must be a whole number from 1 to {endpoints.MAX_PAGE_SIZE}, "
                              f"not {page_size!r}; check --page-size or page_size in [sources.cekura]")
        self.page_size = page_size
        # set by the first answer of any kind: from then on a refused or dropped connection, or a
        # gateway's 502/503/504, is a restart waited out (RetryPolicy.outage_seconds)
        self.heard = False
        self.policy = policy or RetryPolicy()
        if not self.policy.time_budget_seconds > 0:
            raise ConfigError("the time budget must be a positive number of seconds; check time_budget_seconds")
        self.stats = stats or RequestStats()
        # every request of every worker passes it: paced to the API's throttle once it throttles,
        # from the first request when `throttle` (learned on an earlier night) is given
        self.gate = Pacer(connections, self.policy.max_wait_seconds, self.policy.time_budget_seconds,
                          clock=clock, start=throttle)
        self._transport = Transport(
            self.base_url,
            {endpoints.API_KEY_HEADER: api_key.strip(), "Accept": "application/json"},
            connections,
            self.policy.connect_timeout_seconds,
            self.policy.read_timeout_seconds,
            self.policy.answer_deadline_seconds,
        )

    def __repr__(self) -> str:  # never show the key
        return f"CekuraClient(base_url={self.base_url!r})"

    def list_projects(self) -> list[Any]:
        """Every project the key can see, as delivered (a JSON array; unchecked)."""
        return self.get(self.base_url + endpoints.PROJECTS_PATH, pages.read_array)[0]

    def listing_url(self, project_id: int) -> str:
        """The first request of a project's listing: `page_size` asked for (page-number and
        cursor paging keep it in their `next` links; servers that take none ignore it)."""
        query = urlencode({"project_id": project_id, "page_size": self.page_size})
        return f"{self.base_url}{endpoints.SESSIONS_PATH}?{query}"

    def next_url(self, link: str) -> str:
        """A `next` link as the client follows it: on the API root, and on a limit/offset link
        `limit` set to the page size (urls.with_limit)."""
        return with_limit(on_api_root(self.base_url, link), self.page_size)

    def list_sessions(self, project_id: int) -> SessionListing:
        """Every session of one project, whichever list shape the API answers with.

        A paged listing that changes while it is read (DRF pages a live query: a session
        created or deleted between two pages shifts the rest) is read again from the start, up
        to RetryPolicy.listing_reads times in all.

        Raises AuthError (the run stops), ProjectError (this project fails: also when the
        listing never held still) or, once retries are spent, a RetryableError such as
        MalformedBody or Unreachable."""
        moved: ListingMoved | None = None
        for _ in range(max(1, self.policy.listing_reads)):
            try:
                return self._read_listing(project_id)
            except ListingMoved as error:
                moved = error
                log.info("project %s: %s; reading the listing again from its first page", project_id, error)
        raise ProjectError(f"the listing changed every time it was paged ({moved}; read "
                           f"{self.policy.listing_reads} times); its stored rows are kept")

    def _read_listing(self, project_id: int) -> SessionListing:
        digest = hashlib.blake2b(digest_size=16)
        first = self.listing_url(project_id)
        page, _ = self.get(first, pages.read_first_page)
        content = page.content  # as read: bytes that are not UTF-8 already replaced
        digest.update(content)
        contents, sessions, count = [content], page.size, page.count
        read = {_path_and_query(first)}
        while page.next_url:
            url = self.next_url(page.next_url)
            _check_progress(url, read, sessions, count)
            try:
                page, _ = self.get(url, pages.read_later_page)
                content = page.content
            except NotFound:
                # DRF answers 404 "Invalid page." for a page past the end: the listing shrank
                raise ListingMoved(f"page {_path_and_query(url)} is gone (HTTP 404)") from None
            if page.count != count:
                raise ListingMoved(f"`count` went from {count} to {page.count} between pages")
            digest.update(content)
            contents.append(content)
            sessions += page.size
        if isinstance(count, int) and count != sessions:
            raise ListingMoved(f"the pages held {sessions} rows, `count` said {count}")
        return SessionListing(tuple(contents), digest.hexdigest(), sessions, len(contents))

    def get_detail(self, session_id: int) -> dict[str, Any] | None:
        """One session's detail as delivered (a JSON object, its fields unchecked), or None when
        it answers 404 (deleted since it was listed): never retried, the caller records it.
        The same pacer, retry policy and key safety as the listings. Raises AuthError (the run
        stops) or, once retries are spent, a RetryableError such as MalformedBody."""
        try:
            return self.get(self.base_url + endpoints.detail_path(session_id), _read_object)[0]
        except NotFound:
            return None

    def get(self, url: str, read: Callable[[bytes], T]) -> tuple[T, Answer]:
        """GET `url` (on the API root) and `read` the body (parse, check the shape), retried by
        the policy; a body of the wrong shape counts as a failed attempt. Returns what `read`
        made of the answer, and the answer (its bytes and headers). Raises what
        classify_response raises, Untrusted, or, once retries are spent, a RetryableError."""
        controller = retrying(self.policy, self.gate, self.stats, _label(url), lambda: self.heard)
        return controller(self._get_once, url, read)

    def _get_once(self, url: str, read: Callable[[bytes], T]) -> tuple[T, Answer]:
        started = self.gate.turn()
        self.stats.count_request()
        response = None
        try:
            response = self._transport.get(url)
        except ConnectionFailed as error:
            if error.kind == "tls":  # a certificate no retry makes trusted
                raise Untrusted(str(error)) from None
            raise Unreachable(str(error), outage=error.kind in ("refused", "dropped")) from None
        except UndecodableBody as error:
            raise MalformedBody(str(error)) from None
        finally:
            self.gate.answered(started, response)
        self.heard = True
        classify_response(response)
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type:
            raise MalformedBody(f"answer is {content_type or 'untyped'}, not JSON")
        return read(response.content), response


def _check_progress(url: str, read: set[str], sessions: int, count: Any) -> None:
    """Stop a listing whose pages never end: a `next` link to a page already read (a loop), or
    more rows than the first page's `count`. Asking again would loop again, so the project
    fails (its stored rows are kept); `read` gathers the pages' path and query."""
    where = _path_and_query(url)
    if where in read:
        raise ProjectError(f"pagination loops: `next` leads back to {where}, already read")
    if isinstance(count, int) and sessions > count:
        raise ProjectError(f"pagination runs past `count`: {sessions} rows read, count said {count}")
    read.add(where)


def _read_object(content: bytes) -> dict[str, Any]:
    """A JSON object (a detail); anything else is a malformed body, retried like a bad page."""
    body = pages.parse(content)
    if not isinstance(body, dict):
        raise MalformedBody(f"answer is a JSON {type(body).__name__}, not an object")
    return body


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _label(url: str) -> str:
    return f"GET {_path_and_query(url)}"
