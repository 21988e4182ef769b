"""Crash-test hook: with CEKURA_SESSIONS_PAUSE_AT=<stage> a run announces that it reached the
stage by creating a marker file, then waits there until the marker is removed (or 600 s pass),
so a test can kill -9 it, signal it, or let it go on at a known moment. Unset (always, outside
tests), it costs one environment lookup."""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "CEKURA_SESSIONS_PAUSE_AT"
PAUSE_MARKER = "CEKURA_SESSIONS_PAUSE_MARKER"


def armed(stage: str) -> bool:
    return os.environ.get(PAUSE_AT) == stage


def pause_here(stage: str, marker: Path | None = None) -> None:
    if not armed(stage):
        return
    path = Path(os.environ.get(PAUSE_MARKER) or marker or f"cekura-paused-{stage}")
    path.touch()
    deadline = time.monotonic() + 600
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
