"""The retry policy, declared once (tenacity): which failures are retried, how long to wait,
when to give up, and a 429 that pauses every worker of the client, not just the one told."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity

from cekura_sessions.api.errors import RateLimited, RetryableError, describe_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_wait_seconds: float = 30.0  # cap on any one wait, Retry-After included
    max_total_wait_seconds: float = 120.0  # cap on the waits of one request
    backoff_initial_seconds: float = 0.5
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0  # between two socket reads
    answer_deadline_seconds: float = 300.0  # for the whole answer, headers to last byte
    listing_reads: int = 4  # reads of a paged listing that keeps changing before its project fails


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


def retrying(policy: RetryPolicy, gate: BackoffGate, stats: RequestStats, label: str) -> tenacity.Retrying:
    """A tenacity controller for one request: RetryableError is retried (api/errors.py says
    which failures are), anything else is raised at once; each retry is logged at WARNING
    (`label` names the request, never the key) and counted in `stats`."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RetryableError),
        wait=_Wait(policy),
        stop=tenacity.stop_after_attempt(policy.max_attempts) | tenacity.stop_before_delay(policy.max_total_wait_seconds),
        before_sleep=_before_sleep(gate, stats, label),
        reraise=True,
    )


def _before_sleep(gate: BackoffGate, stats: RequestStats, label: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        stats.count_retry()
        error = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.upcoming_sleep
        if isinstance(error, RateLimited):
            # the limit is the key's, not this worker's: every worker waits out the same pause
            gate.hold_until(delay)
        log.warning("%s: attempt %d failed (%s); retrying in %.1f s", label, retry_state.attempt_number,
                    describe_error(error), delay)

    return before_sleep
