"""The time the client paces by: real time, or a scaled one.

The Pacer (api/pacing.py) reads the time and waits through a Clock, so a test can run a
throttle whose window is a minute on a clock that runs twenty times faster, with the server's
throttle on the same scaled time (FakeCekuraApi's `clock`): the window still holds the same
requests, it only costs seconds of the suite instead of minutes.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Real time: monotonic seconds; sleeps and condition waits as long as asked."""

    factor = 1.0  # seconds of this clock per real second

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, condition: threading.Condition, seconds: float | None) -> None:
        """Wait on `condition` (held by the caller) until notified or `seconds` pass (None: until
        notified)."""
        condition.wait(None if seconds is None else max(0.0, seconds))

    def __call__(self) -> float:  # a clock is also a plain callable returning seconds
        return self.now()


class ScaledClock(Clock):
    """Time that runs `factor` times faster than real time, from real Unix time at creation (so
    a server that sends a Unix-time `X-RateLimit-Reset` computes it from a plausible epoch).
    Pass the same instance to the client and as the server's throttle timer."""

    def __init__(self, factor: float) -> None:
        if not factor > 0:
            raise ValueError(f"a clock's factor must be positive, not {factor!r}")
        self.factor = float(factor)
        self._epoch = time.time()
        self._started = time.monotonic()

    def now(self) -> float:
        return self._epoch + (time.monotonic() - self._started) * self.factor

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.factor)

    def wait(self, condition: threading.Condition, seconds: float | None) -> None:
        condition.wait(None if seconds is None else max(0.0, seconds) / self.factor)


REAL_TIME = Clock()
