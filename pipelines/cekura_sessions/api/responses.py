"""What an HTTP answer means for the run: one function classifies every status code."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import urlsplit

import urllib3

from cekura_sessions.api.errors import (
    AuthError,
    NotFound,
    ProjectError,
    RateLimited,
    RetryableError,
)
from cekura_sessions.api.transport import Answer


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


def classify_response(response: Answer) -> None:
    """Return on 2xx; else raise the error class that says what to do (api/errors.py)."""
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
        raise AuthError("the API refused the key (HTTP 401)")
    if status == 429:
        # rate limited: wait as long as the server asks, then try again
        raise RateLimited(f"rate limited (HTTP 429) on {where}", parse_retry_after(response.headers.get("Retry-After")))
    if status == 408 or status >= 500:
        # request timeout or server trouble: usually transient
        raise RetryableError(f"HTTP {status} on {where}", parse_retry_after(response.headers.get("Retry-After")))
    if status == 404:
        # asking again will not change the answer; on a `next` link, the listing shrank
        raise NotFound(f"HTTP 404 on {where}")
    # 400, 403 and the rest of 4xx: asking again will not change the answer
    raise ProjectError(f"HTTP {status} on {where}")
