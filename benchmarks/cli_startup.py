"""How long `cekura-sessions --help`, `--version` and a usage error take, and their peak memory:
each started as its own process several times (wall seconds from start to exit, peak RSS from the
kernel's accounting of the finished child). The budget is 0.3 s and 60 MB (issue 22); what they
import is checked by tests/test_cli_startup.py, without timing.

    .venv/bin/python benchmarks/cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = (["--help"], ["--version"], ["run", "--help"], ["status", "--db-wait", "soon"])


def _command() -> list[str]:
    script = shutil.which("cekura-sessions", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "cekura_sessions.cli"]


def _one(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run."""
    started = time.perf_counter()
    process = subprocess.Popen([*_command(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0  # reaped above
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    print(f"{'command':<40} {'median s':>9} {'max s':>7} {'peak MB':>8}")
    for args in CASES:
        _one(args)  # warm the file cache
        results = [_one(args) for _ in range(runs)]
        seconds = [wall for wall, _ in results]
        print(f"{'cekura-sessions ' + ' '.join(args):<40} {statistics.median(seconds):>9.3f} {max(seconds):>7.3f} "
              f"{max(rss for _, rss in results):>8.1f}")


if __name__ == "__main__":
    main()
