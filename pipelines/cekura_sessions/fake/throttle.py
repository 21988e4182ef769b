"""The fake API's throttle, as Django REST framework's SimpleRateThrottle keeps it: a sliding
window per key (the times of the requests it let through in the last `duration` seconds); a
refused request is not added to the window; a refusal says `Retry-After` as the remaining wait
floored to whole seconds (so often `0`, GOTCHAS.md). Optionally the answers carry the rate-limit
headers a gateway in front of the API adds: the IETF draft's `RateLimit-Limit/Remaining/Reset`
(Reset in seconds from now) or the older `X-RateLimit-*` (Reset as a Unix time, GitHub's way)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import NamedTuple

HEADER_STYLES = ("none", "ratelimit", "x-ratelimit")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # DRF reads only the period's first letter


def parse_rate(rate: str) -> tuple[int, int]:
    """DRF's rate string, `"<requests>/<period>"` (`10/s`, `100/min`, `1000/day`), as (requests,
    seconds); ValueError when it is not one."""
    try:
        count, period = rate.split("/")
        requests, seconds = int(count), _PERIODS[period.strip()[0]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"unknown throttle rate {rate!r}; write it as DRF does, like 10/s or 100/min") from None
    if requests < 1:
        raise ValueError(f"throttle rate {rate!r} lets nothing through")
    return requests, seconds


class Verdict(NamedTuple):
    allowed: bool
    wait: float  # seconds until the oldest request in the window leaves it
    headers: tuple[tuple[str, str], ...]  # Retry-After on a refusal, and the rate-limit headers when asked


class SlidingWindowThrottle:
    """One throttle for every key; safe to call from the server's request threads."""

    def __init__(self, rate: str, header_style: str = "none") -> None:
        if header_style not in HEADER_STYLES:
            raise ValueError(f"unknown throttle header style {header_style!r}; one of {', '.join(HEADER_STYLES)}")
        self.requests, self.duration = parse_rate(rate)
        self.header_style = header_style
        self._history: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> Verdict:
        """Let the request through (and count it) or refuse it (and count nothing)."""
        with self._lock:
            now = time.monotonic()
            history = self._history.setdefault(key, deque())
            while history and history[0] <= now - self.duration:  # DRF: entries older than the window go
                history.popleft()
            allowed = len(history) < self.requests
            if allowed:
                history.append(now)
            remaining = self.requests - len(history)
            # until the oldest entry leaves the window (DRF's wait() when exactly at the limit)
            wait = self.duration - (now - history[0])
        headers = self._rate_limit_headers(remaining, wait)
        if not allowed:
            # '%d' % wait, as DRF's exception handler writes it: a wait under a second says 0
            headers = (("Retry-After", "%d" % wait), *headers)
        return Verdict(allowed, wait, headers)

    def _rate_limit_headers(self, remaining: int, wait: float) -> tuple[tuple[str, str], ...]:
        if self.header_style == "none":
            return ()
        if self.header_style == "ratelimit":
            reset = str(math.ceil(wait))
            prefix = "RateLimit"
        else:
            reset = str(math.ceil(time.time() + wait))
            prefix = "X-RateLimit"
        return ((f"{prefix}-Limit", str(self.requests)), (f"{prefix}-Remaining", str(remaining)),
                (f"{prefix}-Reset", reset))
