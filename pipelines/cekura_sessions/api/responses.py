"""What an HTTP answer means for the run: one function classifies every status code."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import urlsplit

import orjson
import urllib3

from cekura_sessions.api.errors import (
    AuthError,
    Challenged,
    NotFound,
    ProjectError,
    RateLimited,
    RetryableError,
)
from cekura_sessions.api.transport import Answer


def parse_retry_after(value: str | None, seconds_only: bool = False) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date; `seconds_only`: an
    HTTP-date, which a proxy sends where DRF sends seconds, reads as None); None when absent,
    unparsable, zero or in the past, so the caller falls back to exponential backoff."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        if seconds_only:
            return None
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return seconds if seconds > 0 else None


class Quota(NamedTuple):
    """What a gateway's rate-limit headers say: `limit` requests per window, `remaining` of them
    left after this one, the quota freeing in `reset_seconds` from now (whole seconds as sent)."""

    limit: int
    remaining: int
    reset_seconds: float


_EPOCH_SECONDS = 1_000_000_000  # a Reset this large is a Unix time (GitHub's X-RateLimit-Reset), not a delay


def parse_quota(headers: urllib3.HTTPHeaderDict) -> Quota | None:
    """The IETF draft's `RateLimit-Limit/Remaining/Reset`, else the older `X-RateLimit-*`; None
    when neither is there whole or a value is not a number."""
    for prefix in ("RateLimit-", "X-RateLimit-"):
        remaining = headers.get(prefix + "Remaining")
        if remaining is None:
            continue
        try:
            limit, left = int(_first(headers.get(prefix + "Limit"))), int(_first(remaining))
            reset = float(_first(headers.get(prefix + "Reset")))
        except ValueError:
            return None
        if reset >= _EPOCH_SECONDS:
            reset -= time.time()
        return Quota(limit, max(0, left), max(0.0, reset)) if limit > 0 else None
    return None


def _first(value: str | None) -> str:
    # a later draft lists the policies after the number: "RateLimit-Limit: 10, 10;w=1"
    return (value or "").split(",")[0].split(";")[0].strip()


# DRF's `detail` when its authentication refuses a key: NotAuthenticated, AuthenticationFailed's
# default, and the words of the API-key and token authentication classes; compared lowercased
_KEY_REFUSED = frozenset({
    "authentication credentials were not provided.",
    "incorrect authentication credentials.",
    "invalid api key.",
    "invalid token.",
})

# the gateway answers a deploy or failover gives while the app server is down (nginx, a load balancer)
_OUTAGE_STATUSES = frozenset({502, 503, 504})


def classify_response(response: Answer) -> None:
    """Return on 2xx; else raise the error class that says what to do (api/errors.py):
    AuthError, Challenged, ProjectError (NotFound), RateLimited or RetryableError."""
    status = response.status
    if response.headers.get("cf-mitigated", "").strip().lower() == "challenge":
        # Cloudflare's bot challenge wants a browser: nothing this client sends gets past it
        raise Challenged(f"HTTP {status}, cf-mitigated: challenge")
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
        raise AuthError(401)
    if status == 403:
        _classify_forbidden(response, where)
    if status == 429:
        # rate limited: wait as long as the server asks, then try again
        raise RateLimited(f"rate limited (HTTP 429) on {where}", parse_retry_after(response.headers.get("Retry-After")))
    if status == 408 or status >= 500:
        # request timeout or server trouble: usually transient; a gateway's 502/503/504 is what a
        # restarting app server looks like from here, waited out longer (RetryPolicy.outage_seconds)
        raise RetryableError(f"HTTP {status} on {where}", parse_retry_after(response.headers.get("Retry-After")),
                             outage=status in _OUTAGE_STATUSES)
    if status == 404:
        # asking again will not change the answer; on a `next` link, the listing shrank
        raise NotFound(f"HTTP 404 on {where}")
    # 400, 403 and the rest of 4xx: asking again will not change the answer
    raise ProjectError(f"HTTP {status} on {where}")


def _classify_forbidden(response: Answer, where: str) -> None:
    """A 403 that is about the key (DRF answers 403, not 401, when its authentication class
    sends no challenge) stops the run; an HTML page is a firewall's, not the API's; any other
    403 (no permission on this project) returns, to fail the project only."""
    if _is_html(response):
        raise Challenged(f"HTTP 403 with a web page on {where}")
    detail = _detail(response.content)
    if detail is not None and detail.strip().lower() in _KEY_REFUSED:
        raise AuthError(403, detail.strip())


def _is_html(response: Answer) -> bool:
    if "html" in response.headers.get("Content-Type", "").lower():
        return True
    return response.content.lstrip()[:1] == b"<"


def _detail(content: bytes) -> str | None:
    """DRF's `{"detail": "..."}`, else None (the body is not JSON, or says something else)."""
    if len(content) > 4096:  # a detail body is a few dozen bytes
        return None
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else None
