"""Calls run on a thread pool, a bounded number at a time, taken as they complete: the listings'
fetch and the details' reading share this one loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any, TypeVar

T = TypeVar("T")

# how long the caller's thread waits at a time: Python runs a signal's handler in the main thread
# only, and a SIGINT the kernel hands to a fetch thread interrupts no wait of the main one, so
# the main thread looks up at least this often (a Ctrl-C then takes effect within it, not when
# the slowest answer in flight ends)
WAIT_SLICE_SECONDS = 0.5


def completed(pool: Executor, call: Callable[[T], Any], items: Iterable[T], in_flight: int,
              more: Callable[[], bool] = lambda: True) -> Iterator[tuple[T, Future[Any]]]:
    """(item, its finished future) for each item as its call completes, with at most `in_flight`
    calls submitted and not yet taken (so a slow one holds up no other, and finished results
    never pile up). `more()` False submits nothing further; what is running is still taken.
    Calls not yet started when the caller stops are cancelled."""
    queue = iter(items)
    running: dict[Future[Any], T] = {}
    try:
        while True:
            if more():
                for item in queue:
                    running[pool.submit(call, item)] = item
                    if len(running) >= in_flight:
                        break
            if not running:
                return
            done: set[Future[Any]] = set()
            while not done:
                done, _ = wait(running, timeout=WAIT_SLICE_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future
    finally:
        for future in running:
            future.cancel()
