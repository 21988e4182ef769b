"""The order the test modules start in: the longest first.

`make test` runs whole modules on one worker each (--dist loadscope) in the order collected
(--no-loadscope-reorder). xdist's own order, most tests first, started the one-test fault storm
last, and on a busy machine it can pace itself down and wait minutes, idle, after every other
module has ended. Longest first, the last minutes of a run are short modules on every worker.
"""

from __future__ import annotations

import pytest

# wall time of a whole module in a run on 2 cores with 4 workers, longest first: from 72 s
# (test_interruption) down to 24 s; the fault storm first of all, since it may wait minutes
LONGEST_FIRST = (
    "test_fault_storm", "test_interruption", "test_destinations", "test_operations", "test_bad_payloads",
    "test_notebook", "test_session_details", "test_pipeline", "test_postgres_shared", "test_secrets",
    "test_readers", "test_paged_listings", "test_cli_operations", "test_drf_throttle", "test_page_size",
    "test_checks", "test_dlt_folder", "test_wheel", "test_drift",
)


def longest_first(items: list[pytest.Item]) -> None:
    """Sort `items` in place: LONGEST_FIRST's modules first, in its order; then the other modules,
    most tests first (xdist's own order). Tests keep their order within a module."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.path.stem] = counts.get(item.path.stem, 0) + 1
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: (rank.get(item.path.stem, len(rank)), -counts[item.path.stem], item.path.stem))
