"""The retry policy, declared once (tenacity): which failures are retried, how long to wait,
when to give up. A 429 is waited out by the client's Pacer (api/pacing.py), which paces every
worker, not just the one told; it costs no attempt while the night's time budget lasts. A server
that answered earlier in the night and now gives a gateway's 502/503/504 or refuses or drops the
connection is restarting (a deploy, a failover): that request is retried for at least
`outage_seconds` before its project fails."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity

from cekura_sessions.api.endpoints import ANSWER_DEADLINE_SECONDS
from cekura_sessions.api.errors import RateLimited, RetryableError, describe_error
from cekura_sessions.api.pacing import Pacer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_wait_seconds: float = 30.0  # cap on any one wait, Retry-After included
    max_total_wait_seconds: float = 120.0  # cap on the waits of one request
    backoff_initial_seconds: float = 0.5
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0  # between two socket reads
    answer_deadline_seconds: float = ANSWER_DEADLINE_SECONDS  # for the whole answer, headers to last byte
    listing_reads: int = 4  # reads of a paged listing that keeps changing before its project fails
    # from the client's start: while it lasts a 429 is waited out and asked again; once
    # the API still throttles past it, the projects not fetched yet fail and the night ends
    time_budget_seconds: float = 7200.0
    # once the server has answered this night, an outage's failures (RetryableError.outage) of
    # one request are retried for at least this long, attempts or not: a restart behind nginx
    # took 3 s, more than six attempts' backoff on a busy machine; DNS failures and a server
    # never reached still fail after max_attempts
    outage_seconds: float = 90.0


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


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the server gives a positive one, else exponential backoff with jitter;
    both capped, so one hint cannot stall the night. None after a 429: the pacer's turn waits."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._backoff = tenacity.wait_random_exponential(
            multiplier=policy.backoff_initial_seconds, max=policy.max_wait_seconds
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RateLimited):
            return 0.0
        hint = getattr(error, "retry_after", None)
        if hint:
            return min(hint, self._policy.max_wait_seconds)
        return self._backoff(retry_state)


class _Stop(tenacity.stop.stop_base):
    """Gives up after `max_attempts` failures or `max_total_wait_seconds` of waits, 429s not
    counted: how long a throttle is waited out is the night's time budget's to say (the pacer
    fails the request once it is spent). An outage's failure, once `heard()` (the server has
    answered this night), gives up only after `outage_seconds` from the first attempt as well.
    One per request: it counts that request's failures."""

    def __init__(self, policy: RetryPolicy, heard: Callable[[], bool]) -> None:
        self._policy = policy
        self._heard = heard
        self._failures = 0
        self._waited = 0.0

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        if isinstance(error, RateLimited):
            return False
        self._failures += 1
        self._waited += retry_state.upcoming_sleep
        spent = self._failures >= self._policy.max_attempts or self._waited >= self._policy.max_total_wait_seconds
        if spent and getattr(error, "outage", False) and self._heard():
            # seconds_since_start runs from this request's first attempt to this failure
            return retry_state.seconds_since_start >= self._policy.outage_seconds
        return spent


def retrying(policy: RetryPolicy, pacer: Pacer, stats: RequestStats, label: str,
             heard: Callable[[], bool] = lambda: False) -> tenacity.Retrying:
    """A tenacity controller for one request: RetryableError is retried (api/errors.py says
    which failures are), anything else is raised at once; each retry is logged at WARNING, a
    429's at DEBUG (the pacer reports throttling; `label` names the request, never the key) and
    counted in `stats`. `heard()`: whether the server has answered this night (an outage's
    failures are then retried for RetryPolicy.outage_seconds)."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RetryableError),
        wait=_Wait(policy),
        stop=_Stop(policy, heard),
        before_sleep=_before_sleep(stats, label),
        reraise=True,
    )


def _before_sleep(stats: RequestStats, label: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        stats.count_retry()
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RateLimited):
            log.debug("%s: attempt %d throttled (%s); asked again when the pacer allows", label,
                      retry_state.attempt_number, describe_error(error))
            return
        log.warning("%s: attempt %d failed (%s); retrying in %.1f s", label, retry_state.attempt_number,
                    describe_error(error), retry_state.upcoming_sleep)

    return before_sleep
