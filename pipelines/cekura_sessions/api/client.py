"""Cekura's API: auth header, status classification, retry policy, pagination.

Retries live here and only here (tenacity); the transport never retries, so attempts are never
multiplied by a second layer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import tenacity

from cekura_sessions import settings
from cekura_sessions.api import endpoints
from cekura_sessions.api.errors import (
    AuthError,
    ConfigError,
    InsecureUrlError,
    MalformedBody,
    ProjectError,
    RateLimited,
    RetryableError,
    Unreachable,
)
from cekura_sessions.api.pages import (
    Listing,
    Page,
    PageChain,
    listing_from_pages,
    read_array,
    read_first_page,
    read_later_page,
)
from cekura_sessions.api.transport import Answer, ConnectionFailed, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_wait_seconds: float = 30.0  # cap on any one wait, Retry-After included
    max_total_wait_seconds: float = 120.0  # cap on the waits of one request
    backoff_initial_seconds: float = 0.5
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0


@dataclass
class RequestStats:
    """Counters shared by every worker thread of one run."""

    requests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1


class BackoffGate:
    """Makes every worker pause when any of them is told to slow down (429), so the
    API sees the whole client back off instead of a thundering herd of retries."""

    def __init__(self) -> None:
        self._resume_at = 0.0
        self._lock = threading.Lock()

    def hold_until(self, seconds_from_now: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds_from_now)

    def wait(self) -> None:
        with self._lock:
            delay = self._resume_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def check_base_url(base_url: str) -> str:
    """Return the normalised base URL, or raise with a message that says what to fix."""
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
    except ValueError:  # such as an unclosed IPv6 bracket
        hostname = None
    if hostname is None or parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"base URL {base_url!r} is not an http(s) URL; use something like {endpoints.DEFAULT_BASE_URL}"
        )
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise InsecureUrlError(f"refusing to send the API key over plain http to {hostname}; use https")
    return base_url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent,
    unparsable, zero or in the past, so the caller falls back to exponential backoff."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return seconds if seconds > 0 else None


def classify_response(response: Answer) -> None:
    """Raise the error class that says what to do with a non-2xx answer; return on success."""
    status = response.status
    if 200 <= status < 300:
        return
    parts = urlsplit(response.url)
    where = parts.path + (f"?{parts.query}" if parts.query else "")
    if 300 <= status < 400:
        # never followed: the key would travel to wherever it points
        target = urlsplit(response.headers.get("Location") or "")
        moved = f"{target.scheme}://{target.netloc}{target.path}" if target.netloc else target.path or "?"
        raise ProjectError(f"HTTP {status} on {where} redirects to {moved}; set the base URL to where the API is")
    if status == 401:
        # the key is missing or wrong: every other request would fail the same way
        raise AuthError("the API refused the key (HTTP 401); check CEKURA_API_KEY")
    if status == 429:
        # rate limited: wait as long as the server asks, then try again
        raise RateLimited(
            f"rate limited (HTTP 429) on {where}",
            parse_retry_after(response.headers.get("Retry-After")),
        )
    if status == 408 or status >= 500:
        # request timeout or server trouble: usually transient
        raise RetryableError(
            f"HTTP {status} on {where}", parse_retry_after(response.headers.get("Retry-After"))
        )
    # 400, 403, 404 and the rest of 4xx: asking again will not change the answer
    raise ProjectError(f"HTTP {status} on {where}")


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the server gives a positive one, else exponential backoff with jitter;
    both capped, so one hint cannot stall the night."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._backoff = tenacity.wait_random_exponential(
            multiplier=policy.backoff_initial_seconds, max=policy.max_wait_seconds
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        hint = getattr(error, "retry_after", None)
        if hint:
            return min(hint, self._policy.max_wait_seconds)
        return self._backoff(retry_state)


class CekuraClient:
    """One client per run; safe to share between worker threads."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        policy: RetryPolicy | None = None,
        stats: RequestStats | None = None,
        connections: int = settings.DEFAULT_CONCURRENCY,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError("the API key is empty; set CEKURA_API_KEY")
        if any(ord(c) < 32 or ord(c) == 127 for c in api_key.strip()):
            # http.client would refuse it with an error that quotes the whole header
            raise ConfigError("the API key contains control characters; check CEKURA_API_KEY")
        self.base_url = check_base_url(base_url)
        self._api_key = api_key.strip()
        self.policy = policy or RetryPolicy()
        self.stats = stats or RequestStats()
        self.gate = BackoffGate()
        self._transport = Transport(
            self.base_url,
            {endpoints.API_KEY_HEADER: self._api_key, "Accept": "application/json"},
            connections,
            self.policy.connect_timeout_seconds,
            self.policy.read_timeout_seconds,
        )

    def __repr__(self) -> str:  # never show the key
        return f"CekuraClient(base_url={self.base_url!r})"

    def list_projects(self) -> list[dict[str, Any]]:
        return self._get_json(endpoints.PROJECTS_PATH, {}, read_array)

    def list_sessions(
        self, project_id: int, known_fingerprint: str | None = None, known_chain: PageChain = ()
    ) -> Listing:
        """Every session of one project, whichever list shape the API answers with.

        `known_fingerprint` and `known_chain` are the listing as last loaded: an answer whose
        bytes are the same up to its end is not parsed, and a page identical to last time's
        (same bytes so far) is not parsed either, its `next` link taken from the chain, unless
        a later page turns out to differ."""
        fingerprint = hashlib.blake2b(digest_size=16)
        chain: list[tuple[str, str]] = []

        def known_answer(digest: str, content: bytes) -> Any:
            if digest == known_fingerprint:
                return _UNCHANGED
            if len(chain) < len(known_chain) and digest == known_chain[len(chain)][0]:
                return Page(None, known_chain[len(chain)][1], None, content)
            return None

        skip = known_answer if known_fingerprint else None
        page = self._get_json(endpoints.SESSIONS_PATH, {"project_id": project_id}, read_first_page, fingerprint, skip)
        pages = []
        while page is not _UNCHANGED:
            pages.append(page)
            if not page.next_url:
                break
            chain.append((fingerprint.hexdigest(), page.next_url))
            page = self._get_json(self._same_origin(page.next_url), None, read_later_page, fingerprint, skip)
        if page is _UNCHANGED:
            return Listing(None, fingerprint.hexdigest(), chain=tuple(chain))
        pages = [page if page.rows is not None else (read_later_page if i else read_first_page)(page.content)
                 for i, page in enumerate(pages)]
        listing = listing_from_pages(pages, fingerprint.hexdigest(), tuple(chain))
        if isinstance(pages[0].count, int) and pages[0].count != len(listing.rows):
            # the listing moved under us while paging: a retry of the whole listing is safer
            raise MalformedBody(f"paged listing returned {len(listing.rows)} rows, count said {pages[0].count}")
        return listing

    def _same_origin(self, url: str) -> str:
        absolute = urljoin(self.base_url + "/", url)
        if urlsplit(absolute)[:2] != urlsplit(self.base_url)[:2]:
            # never send the key to another host, whatever `next` says
            raise MalformedBody(f"pagination link leaves {self.base_url}")
        return absolute

    def _get_json(
        self,
        path_or_url: str,
        params: dict[str, Any] | None,
        read: Callable[[bytes], Any],
        fingerprint: Any = None,
        known_answer: Callable[[str, bytes], Any] | None = None,
    ) -> Any:
        """GET and `read` (parse, check the shape); a body of the wrong shape counts as a failed
        attempt and is retried.
        The accepted answer's bytes go into `fingerprint` (a hashlib object) when one is given;
        when `known_answer(fingerprint so far with this answer, answer)` gives something, that
        is returned instead, and the answer is not parsed."""
        url = path_or_url if path_or_url.startswith("http") else self.base_url + path_or_url
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetryableError),
            wait=_Wait(self.policy),
            stop=tenacity.stop_after_attempt(self.policy.max_attempts)
            | tenacity.stop_before_delay(self.policy.max_total_wait_seconds),
            before_sleep=lambda state: self._before_sleep(state, _label(url, params)),
            reraise=True,
        )
        return retrying(self._get_accepted, url, params, read, fingerprint, known_answer)

    def _get_accepted(
        self,
        url: str,
        params: dict[str, Any] | None,
        read: Callable[[bytes], Any],
        fingerprint: Any,
        known_answer: Callable[[str, bytes], Any] | None,
    ) -> Any:
        content = self._get_once(url, params)
        if known_answer is not None and fingerprint is not None:
            candidate = fingerprint.copy()
            candidate.update(content)
            known = known_answer(candidate.hexdigest(), content)
            if known is not None:
                fingerprint.update(content)
                return known
        accepted = read(content)
        if fingerprint is not None:
            fingerprint.update(content)
        return accepted

    def _get_once(self, url: str, params: dict[str, Any] | None) -> bytes:
        self.gate.wait()
        self.stats.count_request()
        try:
            response = self._transport.get(url, params)
        except ConnectionFailed as error:
            raise Unreachable(str(error)) from None
        classify_response(response)
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type:
            raise MalformedBody(f"answer is {content_type or 'untyped'}, not JSON")
        return response.content

    def _before_sleep(self, retry_state: tenacity.RetryCallState, label: str) -> None:
        self.stats.count_retry()
        error = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.upcoming_sleep
        if isinstance(error, RateLimited):
            # the limit is the key's, not this worker's: every worker waits out the same pause
            self.gate.hold_until(delay)
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.1f s",
            label,
            retry_state.attempt_number,
            describe_error(error),
            delay,
        )


_UNCHANGED = object()  # an answer identical to the one already loaded


def _label(url: str, params: dict[str, Any] | None) -> str:
    path = urlsplit(url).path
    query = "&".join(f"{k}={v}" for k, v in (params or {}).items()) or urlsplit(url).query
    return f"GET {path}" + (f"?{query}" if query else "")


def describe_error(error: BaseException | None) -> str:
    """One line for people."""
    if error is None:
        return "unknown error"
    return str(error)
