"""The fake API's throttle switches, read without Django: a rate as DRF writes it, and which
rate-limit headers a gateway in front of the API adds (the IETF draft's
`RateLimit-Limit/Remaining/Reset`, Reset in seconds from now, or the older `X-RateLimit-*`, Reset as
a Unix time, GitHub's way). The throttle itself is DRF's (fake/views.py)."""

from __future__ import annotations

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
