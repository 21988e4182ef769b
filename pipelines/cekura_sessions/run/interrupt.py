"""SIGINT and SIGTERM stop a run in order: the signal becomes an exception in the main thread, the
run unwinds (DuckDB transactions roll back, the lock is released), the ledger says `interrupted`,
and the process exits 130 or 143 with one line. The next run completes or discards what dlt left
in its folder, as after a kill.

Written by hand because nothing off the shelf does this for a dlt run: dlt's own handlers hold
the signal until the load drains and then drop it when the package completed, and DuckDB turns
an exception raised by a handler during a query into `RuntimeError: Query interrupted`. So the
handler also records the signal (`raise_if_received` finds it wherever it was swallowed), and a
watchdog ends the process if the run cannot unwind in time (a fetch thread waiting on a slow
answer holds up the thread pool's shutdown for as long as the answer's deadline)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from cekura_sessions import settings
from cekura_sessions.exit_codes import EXIT_SIGINT, EXIT_SIGTERM

_EXIT_CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}

_received: Interrupted | None = None
# the thread that records the interruption and exits (the main thread or the watchdog), so the
# ledger row and the line are written once
_finisher: int | None = None
_finisher_guard = threading.Lock()


class Interrupted(BaseException):
    """A signal stopped the run. A BaseException like KeyboardInterrupt, so no `except Exception`
    on the way swallows it, but not a KeyboardInterrupt, which dlt wraps as a failed step."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = _EXIT_CODES[signum]
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}; the next run finishes or discards what this one left")


def raise_if_received() -> None:
    """Raise the Interrupted a handler raised, if a signal came in while stop_on_signals was
    active: call it where an exception could have swallowed it (DuckDB, a broad `except`)."""
    if _received is not None:
        raise _received


def claim_finish() -> None:
    """Become the thread that records the interruption and exits; if the watchdog already is,
    wait for it to end the process."""
    if not _claim() and _finisher != threading.get_ident():
        threading.Event().wait()


def _claim() -> bool:
    """True when this call made the calling thread the finisher."""
    global _finisher
    with _finisher_guard:
        if _finisher is not None:
            return False
        _finisher = threading.get_ident()
        return True


@contextmanager
def stop_on_signals(
    give_up: Callable[[Interrupted], None], grace_seconds: float = settings.INTERRUPT_GRACE_SECONDS
) -> Iterator[None]:
    """While inside (main thread only), SIGINT and SIGTERM raise Interrupted. If the run has not
    unwound `grace_seconds` after the first signal, or a second signal comes, `give_up(interrupted)`
    runs (record what can be recorded, print the line) and the process exits with the signal's
    code where it stands, as a kill would stop it."""
    global _received, _finisher
    watchdog: list[threading.Timer] = []

    def give_up_and_exit(stop: Interrupted) -> None:
        if not _claim():
            return  # the run is finishing already: it exits by itself
        try:
            give_up(stop)
        finally:
            exit_now(stop.exit_code)

    def handler(signum: int, frame: FrameType | None) -> None:
        global _received
        if _received is not None:  # a second signal: stop now
            give_up_and_exit(_received)
            return
        _received = Interrupted(signum)
        timer = threading.Timer(grace_seconds, give_up_and_exit, [_received])
        timer.daemon = True
        timer.start()
        watchdog.append(timer)
        raise _received

    previous = {signum: signal.signal(signum, handler) for signum in _EXIT_CODES}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        for timer in watchdog:
            timer.cancel()
        _received = _finisher = None


def exit_now(code: int) -> None:
    """Exit without waiting for threads: after an interruption a fetch thread may still wait on
    an answer, and the interpreter's exit would join it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(code)
