"""The one test hook: with CEKURA_TEST_HOOK=<point>:<marker path>, the process that reaches the
named point creates the marker file and waits there until the marker is removed (or 600 s pass),
so a test can kill -9 it, signal it, or let it go on at a known moment. The points:

- `normalize`, `load`, `details`, `models`: a night's stages, each before it starts (run/night.py)
- `load-job`: inside dlt's load, in the main thread, once its first job completed (run/dlt_pipeline.py)
- `model-<name>`: the model build, once `<name>.sql` is materialised, inside the build's
  transaction (models/runner.py)

Unset (always, outside tests), a point costs one environment lookup."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

HOOK = "CEKURA_TEST_HOOK"
LOAD_JOB = "load-job"


def _marker(point: str) -> Path | None:
    """The marker file when the hook names `point`, else None."""
    setting = os.environ.get(HOOK)
    if not setting:
        return None
    name, _, marker = setting.partition(":")
    return Path(marker) if name == point and marker else None


def reach(point: str) -> None:
    """Announce `point` with the marker file and wait there, when the hook names it."""
    marker = _marker(point)
    if marker is None:
        return
    marker.touch()
    deadline = time.monotonic() + 600
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def dlt_progress() -> Any:
    """dlt's progress collector for a pipeline: one that reaches `load-job` when the hook names
    it, else None (dlt's own, which does nothing)."""
    if _marker(LOAD_JOB) is None:
        return None
    from dlt.common.runtime.collector import NullCollector

    class ReachInLoad(NullCollector):
        reached = False

        def update(self, name: str, inc: int = 1, total: int | None = None, inc_total: int | None = None,
                   message: str | None = None, label: str | None = None) -> None:
            # dlt counts one completed job as update("Jobs") and nothing else set
            if not self.reached and (name, inc, total, inc_total, message, label) == ("Jobs", 1, None, None, None, None):
                self.reached = True
                reach(LOAD_JOB)

    return ReachInLoad()
