"""Pacing to the API's throttle: one Pacer per client, the gate every request of every worker
thread passes before it is sent.

Until the API throttles, the pacer only notes the time of each accepted answer and reads the
rate-limit headers, if any: an unthrottled night is not slowed (about 2 microseconds a request),
except that its first requests go out four at a time, one more per answer, so a throttle with
room for fewer than the workers refuses a few requests, not all the workers' first ones.

From the first 429 (or a `RateLimit-Remaining` that the workers could use up at once) it spaces
request starts at a learned rate; spaced starts also bound what is in flight (the rate times an
answer's time), so no separate limit on concurrency is needed. Written here rather than taken
from a library because the rate is not known in advance: DRF's throttle is a sliding window per
key whose 429 says `Retry-After` floored to whole seconds, often `0` (GOTCHAS.md), so the rate is
learned from the answers, additive increase / multiplicative decrease:

- a 429 saying `Retry-After: 0` (or nothing) starts pacing at the rate accepted over the last
  second (a window that was just filled holds that many), or at the headers' limit over their
  window, once the oldest of those answers is a second old; a 429 with a positive `Retry-After` pauses every worker that long and a second more,
  as it is floored (capped by the policy's one wait), and sets no rate, so a lone 429 does not
  slow the rest of the night;
- a 429 after accepted answers means the pace crept just over the limit: the rate drops 5% and
  climbs back over the next hundred accepted answers, so about one request in a hundred is
  refused while the pace stays within a few percent of the limit;
- a 429 with no accepted answer since the last one means the window is full: the rate is kept
  (it was right) and the pause before the next start grows by half each time, so a
  `Retry-After: 0` never makes a tight loop and a throttle that never lifts is asked ever less;
- with the headers, the pace stays just under their limit over their window (the largest
  `Reset` seen), and `Remaining: 0` pauses until the request the server counted `Limit` requests
  ago leaves the window.

The night's time budget bounds all of this: once the API still throttles past it, a request is
not sent again but fails with ThrottledTooLong, so the night ends (the run goes on with what it
has).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from cekura_sessions.api.errors import ThrottledTooLong
from cekura_sessions.api.responses import Quota, parse_quota, parse_retry_after
from cekura_sessions.api.transport import Answer

log = logging.getLogger(__name__)

TRIM = 0.95  # a 429 after accepted answers: the rate drops to this share
CLIMB_ANSWERS = 100  # accepted answers to climb back over that drop
PAUSE_GROWTH = 1.5  # each 429 in a row, with none accepted between, pauses this much longer
SLOW_START_GROWTH = 1.25  # per accepted answer, while no rate is known yet (doubles in about three)
HEADROOM = 0.99  # of the rate the headers advertise: spacing jitter must not cross the window
LOW_QUOTA_SHARE = 0.1  # headers: pacing starts when this share of the limit (or less) remains
REMEMBERED_ANSWERS = 4096  # accepted answers' times kept (the window's replay needs `Limit` of them)
FIRST_SLOTS = 4  # requests in flight at a night's start; one more per answer, up to the connections
REPORT_EVERY_SECONDS = 60.0


class Pacer:
    """Spaces request starts while the API throttles; shared by every worker thread of a client.

    `connections`: requests in flight at most (the workers); `max_pause_seconds`: the longest any
    one pause gets (the policy's cap on one wait); `budget_seconds`: from now, how long 429s are
    waited out."""

    def __init__(self, connections: int, max_pause_seconds: float, budget_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # a night starts with a few requests in flight, so a throttle with room for fewer than
        # the workers refuses a few requests before it is noticed, not all the workers' first ones
        self._connections = connections
        self._slots = min(FIRST_SLOTS, connections)
        self._in_flight = 0
        self._ramping = self._slots < connections  # read without the lock once it is False
        self._max_pause = max_pause_seconds
        self._budget = budget_seconds
        self._deadline = clock() + budget_seconds
        self._accepted: deque[float] = deque(maxlen=REMEMBERED_ANSWERS)  # appends are atomic: no lock
        self._changed = threading.Condition()
        self._pacing = False  # read without the lock on the fast path; set once, never unset
        self._rate = 0.0  # request starts per second while pacing
        self._best_rate = 0.0  # the rate before the last trim: the climb back is a share of it
        self._slow_start = False  # no rate known yet: climb fast until the first trim
        self._next_start = 0.0
        self._plan = 0  # bumped when a 429 or an empty quota voids the slots handed out
        self._replanned_at = -math.inf  # the last 429's plan: requests started before it do not count
        self._refused_in_a_row = 0
        self._accepted_since_replan = 0
        self._limit = 0  # the headers' limit, and their window in seconds (the largest Reset seen)
        self._window = 0.0
        self._throttled = False  # the latest answer was a 429
        self._unspent = 0  # requests the headers' quota still had room for when pacing began
        self._answers = self._refused = 0  # since pacing began, for the periodic report
        self._reported_at = -math.inf
        self._budget_reported = False

    # --- before a request ------------------------------------------------------------------------

    def turn(self) -> float:
        """Wait for this request's turn to start; returns its start (the clock's time). Every
        turn is followed by answered(), answer or not. Raises ThrottledTooLong when the API still
        throttles and the turn would come past the budget."""
        if self._ramping:
            self._take_slot()
        if not self._pacing:
            return self._clock()
        try:
            return self._paced_turn()
        except BaseException:
            self.answered(0.0, None)
            raise

    def _take_slot(self) -> None:
        with self._changed:
            while self._ramping and self._in_flight >= self._slots:
                self._changed.wait()
            self._in_flight += 1

    def _paced_turn(self) -> float:
        with self._changed:
            while True:
                now = self._clock()
                start = max(now, self._next_start)
                if self._throttled and start > self._deadline:
                    raise self._too_long()
                if self._unspent > 0 and start == now:
                    self._unspent -= 1  # the quota the headers said is left, not yet asked for: no wait
                    return now
                self._next_start = start + 1.0 / self._rate
                plan = self._plan
                while now < start and plan == self._plan:
                    self._changed.wait(start - now)
                    now = self._clock()
                if plan == self._plan:
                    return start
                # the plan changed while this turn waited (a 429): its slot is void, take a new one

    # --- after an answer -------------------------------------------------------------------------

    def answered(self, started: float, answer: Answer | None) -> None:
        """Learn from the answer (None: there was none) to a request that started at `started`
        (as turn() returned)."""
        if self._ramping:
            self._free_slot(answer is not None and answer.status != 429)
        if answer is None:
            return
        quota = parse_quota(answer.headers)
        if answer.status != 429:
            now = self._clock()
            self._accepted.append(now)
            if self._pacing or (quota is not None and self._quota_is_low(quota)):
                with self._changed:
                    self._on_accepted(started, now, quota)
            return
        with self._changed:
            self._on_refused(started, answer, quota)

    def _quota_is_low(self, quota: Quota) -> bool:
        # what is left would not cover one more request from every worker, or is a small share
        return quota.remaining <= max(quota.limit * LOW_QUOTA_SHARE, self._connections)

    def _free_slot(self, grow: bool) -> None:
        with self._changed:
            self._in_flight -= 1
            self._slots += grow
            self._ramping = self._slots < self._connections
            self._changed.notify_all()

    def _on_accepted(self, started: float, now: float, quota: Quota | None) -> None:
        if not self._pacing and quota is not None:
            self._on_low_quota(now, quota)
        self._throttled = False
        self._refused_in_a_row = 0
        self._answers += 1
        if started >= self._replanned_at:  # sent at the current pace
            self._accepted_since_replan += 1
        if math.isinf(self._rate):
            pass
        elif self._slow_start:
            self._rate *= SLOW_START_GROWTH
        else:
            self._rate += self._best_rate * (1 - TRIM) / CLIMB_ANSWERS
        advertised = self._advertised_rate()
        if advertised is not None:
            self._rate = min(self._rate, advertised * HEADROOM)
        self._follow_quota(now, quota)
        self._report(now)

    def _on_refused(self, started: float, answer: Answer, quota: Quota | None) -> None:
        now = self._clock()
        retry_after = parse_retry_after(answer.headers.get("Retry-After")) or 0.0
        if retry_after:
            # floored to whole seconds (GOTCHAS.md): the wait may be up to a second longer
            retry_after = min(retry_after + 1.0, self._max_pause)
        self._throttled = True
        self._answers += 1
        self._refused += 1
        first = not self._pacing
        if first:
            self._start_pacing(now, quota, by_rate=not retry_after)
        elif started < self._replanned_at:
            # sent before the last 429 was taken into account: that plan stands, unless the
            # server now asks for a longer pause
            if now + retry_after > self._next_start:
                self._replan(now + retry_after)
            self._follow_quota(now, quota)
            return
        elif math.isinf(self._rate):
            if not retry_after:  # paused until now; a window that frees within a second wants a rate
                self._set_rate(now)
        elif self._accepted_since_replan:  # sent at the current pace and refused: just over the limit
            self._best_rate = self._rate
            # the end of a slow start may have overshot by several steps: what was accepted says
            measured = self._accepted_last_second(now) if self._slow_start else self._rate
            self._rate = max(min(self._rate * TRIM, measured), 1.0 / self._max_pause)
            self._slow_start = False
        # else: nothing accepted since the last 429; the window is full, the rate was not the fault
        self._refused_in_a_row += 1
        pause = max(retry_after, PAUSE_GROWTH ** (self._refused_in_a_row - 1) / self._rate)
        if first and not retry_after:
            # `Retry-After: 0` says a place frees within the second: most likely that of the
            # oldest answer accepted in the last second, whose window that second is
            recent = [at for at in self._accepted if at > now - 1.0]
            pause = max(pause, (min(recent) + 1.0 - now) if recent else 0.0)
        self._replan(now + min(pause, self._max_pause))
        self._replanned_at, self._accepted_since_replan = now, 0
        self._follow_quota(now, quota)
        if first:  # one line for the night's first 429, once every worker is paused; then a report a minute
            pacing = (f"every request waits {pause:.1f} s" if math.isinf(self._rate)
                      else f"every request is paced from now on, at first {self._rate:.1f} requests/s")
            log.warning("the API throttles (HTTP 429 on %s): %s", urlsplit(answer.url).path, pacing)
        else:
            log.debug("HTTP 429 (%d in a row): pacing at %.2f requests/s after a %.2f s pause",
                      self._refused_in_a_row, self._rate, min(pause, self._max_pause))
        self._report(now)

    def _start_pacing(self, now: float, quota: Quota | None, by_rate: bool = True) -> None:
        """`by_rate` False (a positive Retry-After said when to come back): pause, but set no
        rate until a 429 says 0, so a lone 429 does not slow the rest of the night."""
        self._learn_quota(quota)
        self._rate = math.inf
        if by_rate or self._advertised_rate() is not None:
            self._set_rate(now)
        self._pacing, self._replanned_at, self._reported_at = True, now, now

    def _set_rate(self, now: float) -> None:
        advertised = self._advertised_rate()
        if advertised is not None:
            rate = advertised * HEADROOM
        else:
            # the answers accepted in the last second: a window just filled let that many through
            rate = self._accepted_last_second(now)
        self._slow_start = rate < 2.0  # too few to tell: the window was full before we began
        self._rate = self._best_rate = max(rate, 1.0)

    def _accepted_last_second(self, now: float) -> float:
        return float(sum(1 for at in self._accepted if at > now - 1.0))

    def _on_low_quota(self, now: float, quota: Quota) -> None:
        self._start_pacing(now, quota)
        # what is left goes at once, less what is already on its way (known while ramping up)
        self._unspent = max(0, quota.remaining - self._in_flight) if self._ramping else 0
        log.info("the API's rate-limit headers say %d of %d requests are left: pacing requests at %.1f/s",
                 quota.remaining, quota.limit, self._rate)

    def _learn_quota(self, quota: Quota | None) -> None:
        if quota is not None:
            self._limit = quota.limit
            # the largest Reset seen is the window; floored, as a Unix-time Reset can say up to a
            # second more
            self._window = max(self._window, float(math.floor(quota.reset_seconds)), 1.0)

    def _advertised_rate(self) -> float | None:
        """The rate the headers advertise, requests per second (None without headers)."""
        return self._limit / self._window if self._limit and self._window else None

    def _follow_quota(self, now: float, quota: Quota | None) -> None:
        """Headers: `Remaining: 0` pauses until a place in the window frees."""
        if quota is None:
            return
        self._learn_quota(quota)
        if quota.remaining > 0:
            return
        frees = now + quota.reset_seconds
        if len(self._accepted) >= quota.limit:
            # the request accepted `limit` answers ago leaves the window `window` seconds after
            # the server counted it, which was before its answer came: sooner than Reset's whole
            # seconds say
            frees = min(frees, self._accepted[-quota.limit] + self._window)
        if frees > self._next_start:
            self._replan(min(frees, now + self._max_pause))

    def _replan(self, next_start: float) -> None:
        """No request starts before `next_start`: the slots handed out are void."""
        self._next_start = next_start
        self._unspent = 0
        self._plan += 1
        self._changed.notify_all()

    # --- the night's budget and what people read -------------------------------------------------

    def _too_long(self) -> ThrottledTooLong:
        if not self._budget_reported:
            self._budget_reported = True
            log.error("the API still throttles (HTTP 429) after the night's time budget of %g s: the projects "
                      "not fetched yet fail this night and keep their stored rows; run again later, or raise "
                      "time_budget_seconds", self._budget)
        return ThrottledTooLong(f"not fetched: the API still throttled (HTTP 429) when the night's time budget "
                                f"of {self._budget:g} s ran out")

    def _report(self, now: float) -> None:
        if now - self._reported_at >= REPORT_EVERY_SECONDS:
            self._reported_at = now
            log.info("throttled: pacing at %.1f requests/s; %d of %d answers since pacing began were HTTP 429",
                     self._rate, self._refused, self._answers)
