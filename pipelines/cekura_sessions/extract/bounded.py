"""Calls run on a thread pool, a bounded number at a time, taken as they complete: the listings'
fetch and the details' reading share this one loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any, TypeVar

T = TypeVar("T")


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
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future
    finally:
        for future in running:
            future.cancel()
