"""The progress line on a terminal: it counts projects as their listings finish, and a log line
never lands inside it (the line is cleared before the record and drawn again after).

`cekura-sessions run` runs on a real pseudo-terminal (the `pty` module) against the fake API,
whose answers are slowed so projects finish one by one; the test reads the bytes the terminal
got. One project's first answer is a 503 and another's is always 403, so warnings are logged
while the line is up."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import termios
import time
from pathlib import Path

import pytest
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, warm
from support.processes import CLI
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the CLI in a subprocess on a pseudo-terminal

CLEAR = b"\r\x1b[K"
LOG_RECORD = re.compile(rb"\d\d:\d\d:\d\d (?:DEBUG|INFO|WARNING|ERROR)\s")
PROGRESS = re.compile(rb"(\d+)/(\d+) projects listed")


def _run_on_a_terminal(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> tuple[int, bytes]:
    """Run the command with stdin, stdout and stderr on a new pseudo-terminal (200 columns);
    return its exit code and every byte the terminal received."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    process = warm.Popen(args, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=cwd,
                         start_new_session=True)
    os.close(terminal)
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every copy of the terminal's end is closed, the command is done
                break
            if not chunk:
                break
            received += chunk
        return process.wait(timeout=30), bytes(received)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()


def test_progress_moves_as_projects_finish_and_log_lines_never_collide(tmp_path):
    dataset = generate(DataSpec(projects=8, sessions_per_project=5))
    listed = expected.listed_project_ids(dataset)
    retried, forbidden = listed[1], listed[3]
    faults = Faults(latency_ms=300, script={("sessions", retried): ["503"]}, always={forbidden: "403"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEKURA_", "SOURCES__"))}
    env.update(CEKURA_API_KEY=API_KEY, RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(tmp_path / "dlt-data"),
               TERM="xterm")

    with FakeCekuraApi(dataset, api_key=API_KEY, faults=faults) as api:
        code, screen = _run_on_a_terminal(
            # the listings' progress: without the details, whose 40 answers at 300 ms each were
            # most of the test's time
            [*CLI, "run", "--base-url", api.url, "--db", str(tmp_path / "cekura.duckdb"), "--concurrency", "1",
             "--no-details"],
            env, tmp_path,
        )

    shown = screen.decode("utf-8", "replace")
    assert code == 1, f"exit {code} (one project is forbidden: partial)\n{shown}"
    records = list(LOG_RECORD.finditer(screen))
    warned = [m for m in records if b"WARNING" in m.group()]
    assert len(warned) >= 2, f"want the retry and the forbidden project logged\n{shown}"
    for record in records:
        before = screen[: record.start()]
        assert before == b"" or before.endswith((b"\n", CLEAR)), (
            f"a log record starts mid-line after {before[-80:]!r}")
        rest_of_line = screen[record.start():].split(b"\n", 1)[0]
        assert PROGRESS.search(rest_of_line) is None, f"the progress line is inside a log line: {rest_of_line!r}"

    counts = [(int(done), int(wanted)) for done, wanted in PROGRESS.findall(screen)]
    assert counts, f"no progress line on the terminal\n{shown}"
    assert {wanted for _, wanted in counts} == {len(listed)}, counts
    done = [d for d, _ in counts]
    assert done == sorted(done), f"the count went back: {done}"
    assert done[-1] == len(listed), f"it never reached {len(listed)}: {done}"
    assert len(set(done)) >= 3, f"the count jumped instead of moving as projects finished: {done}"
    # the line is gone before the summary: nothing of it after the last clear
    summary = screen.rsplit(CLEAR, 1)[1]
    assert PROGRESS.search(summary) is None and b"run " in summary, summary
