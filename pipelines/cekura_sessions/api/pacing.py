"""Pacing to the API's throttle: one Pacer per client, the gate every request of every worker
thread passes before it is sent.

Cekura is a Django REST framework app, and DRF's throttle is a sliding window per key: N
requests are allowed in any W seconds (`10/s`, `20/min`); a request that would be the N+1th is
refused with 429, is not counted, and `Retry-After` says the seconds until the oldest request in
the window leaves it, rounded up (DRF 3.18's `Throttled`; the fake runs DRF's own throttle,
fake/views.py). So the fastest a client can go is N at once each window: R requests need
W x (ceil(R / N) - 1). An average rate (N / W, evenly spaced) would take twice that at 20/min,
so the pacer learns N and W, not a rate, and keeps a replica of the server's window:

- a request may start when fewer than N accepted answers (within the last W seconds) and
  requests in flight add up. Answers come after the server stamped their request, so the replica
  counts every request the server's window holds and never lets through one it would refuse;
  once the window is full, each place frees W after the answer that took it, so after a pause
  requests resume one by one as places free, never all at once;
- a 429 with `Retry-After` teaches both: W is the smallest DRF period (1, 60, 3600, 86400 s) that
  is at least the Retry-After, N the answers accepted within that window (and any request in
  flight then that is accepted within it); a later 429 of a request that took the window's last
  place means N was too many: N is counted again the same way, at most N - 1, so a window paced
  k too many (whose every fill refuses its last k places) is corrected at its first fill, not
  over k fills; unless the last place before it was answered: a smaller window refuses its last
  place every time it fills, so a lone 429 there (a proxy's, a fault) lowers nothing, and stray
  429s cannot walk a night down to one request a window; a Retry-After beyond W means a longer
  window;
- a 429 without `Retry-After` (DRF's overfull window, or a proxy) guesses the window a second
  (or keeps the known one), and pauses longer with each such 429 in a row, so it never makes a
  tight loop; one whose `Retry-After` is an HTTP-date (a proxy's) is waited out, and teaches as
  one without;
- `RateLimit-*` / `X-RateLimit-*` headers say N (`Limit`) and W (the largest `Reset`) outright.

What is learned is kept by the run (run/throttle_memory.py) and handed to the next night's
Pacer (`start`), which then paces from its first request. Until a throttle is known, at most
FIRST_SLOTS requests are in flight in the night's first second, so a window smaller than the
workers refuses only the few in flight when it first fills.

The night's time budget bounds all of this: a request whose turn would come past it, while
the API throttles, fails with ThrottledTooLong, so the night ends (the run goes on with what it
has). A Retry-After longer than the policy's cap on one wait is honoured within that budget.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cekura_sessions.api.clock import REAL_TIME, Clock
from cekura_sessions.api.errors import ThrottledTooLong
from cekura_sessions.api.responses import Quota, parse_quota, parse_retry_after
from cekura_sessions.api.transport import Answer

log = logging.getLogger(__name__)

DRF_PERIODS = (1.0, 60.0, 3600.0, 86400.0)  # what DRF's rate strings can say: s, min, hour, day
FIRST_SLOTS = 4  # requests in flight at a night's start, until a throttle is known or ...
FIRST_SECONDS = 1.0  # ... this much of the night has passed
PAUSE_GROWTH = 1.5  # each 429 without Retry-After in a row, with none accepted between, pauses this much longer
REMEMBERED_ANSWERS = 65536  # accepted answers' times kept: a window is learned from those within it
LONG_WAIT_SECONDS = 5.0  # a wait for a place in the window this long is said at INFO
REPORT_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Throttle:
    """`limit` requests in any `window_seconds`, as DRF's throttle allows them."""

    limit: int
    window_seconds: float

    @property
    def rate(self) -> float:
        """Requests per second, on average."""
        return self.limit / self.window_seconds

    def __str__(self) -> str:
        return f"{self.limit} requests per {window_text(self.window_seconds)} ({self.rate:.2f} requests/s)"


def window_text(seconds: float) -> str:
    names = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    return names.get(float(seconds), f"{seconds:g} s")


def drf_period(seconds: float) -> float:
    """The smallest DRF period that is at least `seconds` (beyond a day: `seconds` itself)."""
    for period in DRF_PERIODS:
        if seconds <= period:
            return period
    return float(seconds)


class Pacer:
    """Paces request starts to the API's throttle; shared by every worker thread of a client.

    `connections`: requests in flight at most (the workers); `max_pause_seconds`: the longest
    pause a 429 without Retry-After gets (the policy's cap on one wait); `budget_seconds`: from
    now, how long a throttling API is waited out; `clock`: a Clock (api/clock.py) or a callable
    returning seconds (then waits are real time); `start`: a throttle learned on an earlier
    night, paced to from the first request."""

    def __init__(self, connections: int, max_pause_seconds: float, budget_seconds: float,
                 clock: Clock | Callable[[], float] = REAL_TIME, start: Throttle | None = None) -> None:
        self._clock = clock if isinstance(clock, Clock) else _CallableClock(clock)
        self._connections = max(1, connections)
        self._max_pause = max_pause_seconds
        self._budget = budget_seconds
        self._deadline = self._clock.now() + budget_seconds
        self._changed = threading.Condition()
        # (answer time, start time) of every accepted answer, oldest first; appended under the lock
        self._accepted: deque[tuple[float, float]] = deque(maxlen=REMEMBERED_ANSWERS)
        self._in_flight = 0
        self._first_turn: float | None = None
        # the first second is the machine's (what four workers get answered in it), whatever
        # the clock's scale
        self._first_seconds = FIRST_SECONDS * self._clock.factor
        self._throttle = start
        self._remembered = start is not None
        self._taught = False  # a 429 or the headers said the throttle this night
        self._learned_at = -math.inf  # requests that started before this do not teach
        # whether the latest answer, 2xx or 429, to a request at the known window's last place was a 2xx
        self._last_place_answered = False
        # (learned at, window opened, window, at most): late answers add to what was learned
        self._lesson: tuple[float, float, float, float] | None = None
        self._not_before = -math.inf  # no request starts before this (a Retry-After, a pause)
        # the thread a 429 answered asks again no sooner than its Retry-After says (a worker
        # retries its own request): `.not_before`
        self._own = threading.local()
        self._throttled = False  # the latest answer was a 429
        self._refused_in_a_row = 0
        self._answers = self._refused = 0  # since the first 429, for the periodic report
        self._reported_at = -math.inf
        self._waits_said_until = -math.inf
        self._long_retry_after_said = False
        self._budget_reported = False
        if start is not None:
            log.info("pacing to the throttle learned on an earlier night: %s", start)

    @property
    def throttle(self) -> Throttle | None:
        """The throttle as known now (learned this night, or the one the night started from)."""
        return self._throttle

    @property
    def taught(self) -> bool:
        """Whether this night's answers (a 429, rate-limit headers) said the throttle."""
        return self._taught

    # --- before a request ------------------------------------------------------------------------

    def turn(self) -> float:
        """Wait for this request's turn to start; returns its start (the clock's time). Every
        turn that returns is followed by answered(), answer or not. Raises ThrottledTooLong when
        the API throttles and the turn would come past the budget."""
        own = getattr(self._own, "not_before", -math.inf)
        with self._changed:
            now = self._clock.now()
            if self._first_turn is None:
                self._first_turn = now
            while True:
                ready, until, last = (False, own, False) if now < own else self._room(now)
                if ready:
                    self._in_flight += 1
                    self._own.not_before = -math.inf
                    self._own.last_place = last
                    return now
                if until is not None and until > self._deadline and (self._throttled or self._throttle is not None):
                    raise self._too_long()
                if until is not None:
                    self._say_wait(now, until)
                self._clock.wait(self._changed, None if until is None else until - now)
                now = self._clock.now()

    def _room(self, now: float) -> tuple[bool, float | None, bool]:
        """Whether a request may start now; if not, when to look again (None: at the next answer);
        and whether it takes the last place the known window has."""
        if now < self._not_before:
            return False, self._not_before, False
        throttle = self._throttle
        if throttle is None:
            first = now < self._first_turn + self._first_seconds  # type: ignore[operator]
            cap = min(FIRST_SLOTS, self._connections) if first else self._connections
            if self._in_flight < cap:
                return True, None, False
            return False, (self._first_turn + self._first_seconds if first and self._in_flight < self._connections  # type: ignore[operator]
                           else None), False
        if self._in_flight >= self._connections:
            return False, None, False
        window = self._window_answers(now - throttle.window_seconds)
        used = len(window) + self._in_flight
        if used < throttle.limit:
            return True, None, used + 1 >= throttle.limit
        leave = used - throttle.limit + 1  # answers that must leave the window before a place is free
        if leave > len(window):
            return False, None, False  # only answers to requests in flight can free it
        return False, window[leave - 1] + throttle.window_seconds, False

    def _window_answers(self, since: float) -> list[float]:
        """Times of the accepted answers after `since`, oldest first."""
        times: list[float] = []
        for at, _ in reversed(self._accepted):
            if at <= since:
                break
            times.append(at)
        times.reverse()
        return times

    # --- after an answer -------------------------------------------------------------------------

    def answered(self, started: float, answer: Answer | None) -> None:
        """Learn from the answer (None: there was none) to a request that started at `started`
        (as turn() returned)."""
        quota = parse_quota(answer.headers) if answer is not None else None
        with self._changed:
            self._in_flight -= 1
            now = self._clock.now()
            if answer is not None and answer.status == 429:
                self._on_refused(started, now, answer, quota)
            else:
                if answer is not None and 200 <= answer.status < 300 and getattr(self._own, "last_place", False):
                    # only a success says DRF's throttle let it through (it checks the throttle after
                    # authentication and permissions, and a proxy answers 5xx on its own); any other
                    # answer says nothing either way
                    self._last_place_answered = True
                # no answer: the server may have counted it; counting it too is the safe side
                self._on_accepted(started, now, quota)
            self._changed.notify_all()

    def _on_accepted(self, started: float, now: float, quota: Quota | None) -> None:
        self._accepted.append((now, started))
        self._throttled = False
        self._refused_in_a_row = 0
        if quota is not None:
            self._learn_from_quota(quota, now)
        elif self._lesson is not None and started < self._lesson[0]:
            self._late_answer(started, now)
        if self._answers or self._refused:
            self._answers += 1
            self._report(now)

    def _late_answer(self, started: float, now: float) -> None:
        """An answer accepted after the 429 that taught the limit, to a request in flight then:
        within the window the lesson counted (its request stamped before that window's oldest
        request left it), it was one of the window's N too; up to what the lesson allows."""
        _, opened, window, most = self._lesson  # type: ignore[misc]
        if self._throttle is not None and now < opened + window and self._throttle.limit < most:
            self._throttle = Throttle(self._throttle.limit + 1, self._throttle.window_seconds)
            log.debug("an answer in flight at the 429 was accepted within its window: pacing to %s", self._throttle)

    def _on_refused(self, started: float, now: float, answer: Answer, quota: Quota | None) -> None:
        self._throttled = True
        self._refused_in_a_row += 1
        self._answers += 1
        self._refused += 1
        header = answer.headers.get("Retry-After")
        retry_after = parse_retry_after(header)
        if retry_after is not None:
            if retry_after > self._max_pause and not self._long_retry_after_said:
                self._long_retry_after_said = True
                log.info("the API asks to wait %.0f s (Retry-After), longer than the %g s other waits are capped at: "
                         "honoured, as the night's time budget of %g s allows", retry_after, self._max_pause, self._budget)
            # DRF rounds its wait up: the oldest request leaves the window no sooner than this
            self._not_before = max(self._not_before, started + math.ceil(retry_after) - 1.0)
            # the refused request itself waits as long as it was told, as HTTP says
            self._own.not_before = now + retry_after
        before = self._throttle
        if quota is not None:
            self._learn_from_quota(quota, now)
        elif started >= self._learned_at:  # sent under what was known: it teaches
            # a date (a proxy's: DRF sends seconds) is waited for, but says nothing of a window: in
            # whole seconds of another clock, 1.3 s ahead would read as a 60 s window
            said = parse_retry_after(header, seconds_only=True)
            self._learn_from_refusal(started, now, said, getattr(self._own, "last_place", False))
        if retry_after is None:
            # no word on when: pause, longer with each such 429 in a row, so it never loops tight
            base = self._throttle.window_seconds / self._throttle.limit if self._throttle is not None else 1.0
            pause = base * PAUSE_GROWTH ** (self._refused_in_a_row - 1)
            self._not_before = max(self._not_before, now + min(pause, self._max_pause))
        path = urlsplit(answer.url).path
        if before is None and self._throttle is not None:  # the night's first lesson: one line
            log.warning("the API throttles (HTTP 429 on %s): it allows %s; requests are paced to that window "
                        "from now on", path, self._throttle)
        elif before is not None and self._throttle != before:
            log.info("the API's throttle is %s, not %s as paced until now (HTTP 429 on %s)",
                     self._throttle, before, path)
        else:
            log.debug("HTTP 429 on %s (%d in a row); pacing to %s", path, self._refused_in_a_row, self._throttle)
        self._report(now)

    def _learn_from_refusal(self, started: float, now: float, retry_after: float | None, last_place: bool) -> None:
        """N is the answers accepted within the window, as the server counted them when it refused.
        Once a window is known, only a 429 at its last place (`last_place`: the refused request
        took it) corrects it, and to fewer than N: the answers of this window again, so a window
        paced k too many, whose fill refuses its last k places, is corrected at once, not one by
        one. Refused with places to spare, or at the last place just after the last place was
        answered, the 429 was not the window's (a proxy's, another client's): the refused request
        waits, the window stays."""
        known = self._throttle
        wait = float(math.ceil(retry_after)) if retry_after is not None else None
        if known is not None and (wait is None or wait <= known.window_seconds):  # a correction
            if not last_place or known.limit <= 1:
                return
            if self._last_place_answered:
                self._last_place_answered = False  # the next 429 there, in a row, is the window's
                log.debug("HTTP 429 at the window's last place just after it was answered: not the window's")
                return
            window, most = known.window_seconds, known.limit - 1
        else:  # without Retry-After, the window is a guess
            window, most = (1.0 if wait is None else drf_period(wait)), math.inf
        if wait is None:
            cutoff = now - window
        else:
            # the oldest request of the full window was stamped more than `window - wait` seconds
            # before the refused one (DRF rounds up): every request of that window was answered after
            cutoff = started - window + max(wait - 1.0, 0.0)
        counted = [(at, start) for at, start in self._accepted if at > cutoff]
        if known is None and len(counted) < FIRST_SLOTS:
            # fewer answers than the night's first requests in flight: a window this small cannot
            # be told from a lone 429 (a proxy's, a fault) at the night's start: the refused
            # request waits its Retry-After (or every request a growing pause, without one)
            return
        limit = max(1, int(min(len(counted), most)))
        opened = min((start for _, start in counted), default=now)
        self._teach(Throttle(limit, window), now, (now, opened, window, most))

    def _learn_from_quota(self, quota: Quota, now: float) -> None:
        """The headers: `Limit` per the largest `Reset` seen (a Unix-time Reset can read up to a
        second more, so its whole seconds), as a DRF period."""
        window = drf_period(max(1.0, float(math.floor(quota.reset_seconds))))
        known = self._throttle
        if known is not None and self._taught:
            window = max(window, known.window_seconds)  # a Reset mid-window says less than the window
        throttle = Throttle(quota.limit, window)
        if self._taught and throttle == known:
            return
        if throttle != known:
            log.info("the API's rate-limit headers say %s: requests are paced to that window", throttle)
        self._teach(throttle, now, None)

    def _teach(self, throttle: Throttle, now: float, lesson: tuple[float, float, float, float] | None) -> None:
        self._throttle = throttle
        self._taught = True
        self._learned_at = now
        self._lesson = lesson
        self._last_place_answered = False  # the new window's last place has not been answered yet
        if self._reported_at == -math.inf:
            self._reported_at = now

    # --- the night's budget and what people read -------------------------------------------------

    def _say_wait(self, now: float, until: float) -> None:
        """One line when the window is full for a while (a minute's window: most of a minute)."""
        if until - now >= LONG_WAIT_SECONDS and now >= self._waits_said_until:
            self._waits_said_until = until
            log.info("the API's window is full (%s): the next request waits %.1f s for a place",
                     self._throttle if self._throttle is not None else "throttled", until - now)

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
            log.info("throttled: pacing to %s; %d of %d answers since the first 429 were HTTP 429",
                     self._throttle, self._refused, self._answers)


class _CallableClock(Clock):
    """A plain callable as the time; waits are real time."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()
