"""Crash-test hook: with CEKURA_SESSIONS_PAUSE_AT=<stage> a run announces that it reached the
stage by creating a marker file, then waits there, so a test can kill -9 it at a known moment.
Unset (always, outside tests), it costs one environment lookup."""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "CEKURA_SESSIONS_PAUSE_AT"
PAUSE_MARKER = "CEKURA_SESSIONS_PAUSE_MARKER"


def pause_here(stage: str, marker: Path | None = None) -> None:
    if os.environ.get(PAUSE_AT) != stage:
        return
    Path(os.environ.get(PAUSE_MARKER) or marker or f"cekura-paused-{stage}").touch()
    time.sleep(600)
