"""`make notebook` installs the notebook extras once: a second run calls no pip, so it works
offline. The repository's own Makefile runs under the real `make`, in a copy of the files it
reads; the programs it calls (pip, jupyter) are stand-ins in the copy's .venv/bin that write down
how they were called, and pip fails the way it does without a network when told to."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
if [ "$(basename "$0")" = pip ] && [ -n "$PIP_OFFLINE" ]; then
    echo "ERROR: Could not find a version that satisfies the requirement setuptools>=68 (no network)" >&2
    exit 1
fi
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _checkout(folder: Path) -> Path:
    """The files `make notebook` reads, and a .venv whose base install is already done; returns
    the log the stand-ins write to."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, folder / name)
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = folder / "calls.log"
    for program in ("pip", "jupyter", "cekura-sessions", "python"):
        (bin_dir / program).write_text(RECORDER.format(log=log))
        (bin_dir / program).chmod(0o755)
    _age(folder / "Makefile", folder / "pyproject.toml", folder / "constraints.txt", seconds=600)
    for stamp in (".installed-demo", ".installed"):  # the demo's install, then the tests' extras on top
        (folder / ".venv" / stamp).touch()
        _age(folder / ".venv" / stamp, seconds=300)  # newer than what it depends on: `make install` ran
    return log


def _age(*paths: Path, seconds: float) -> None:
    """Date the files `seconds` ago (make compares modification times; none may be in the future)."""
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def _make_notebook(folder: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CEKURA_DB": str(folder / "nightly.duckdb"), **env}
    environment.pop("MAKEFLAGS", None)
    return subprocess.run(["make", "--no-print-directory", "notebook"], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=60)


def test_make_notebook_installs_the_extras_once_then_works_offline(tmp_path):
    log = _checkout(tmp_path)

    first = _make_notebook(tmp_path)
    second = _make_notebook(tmp_path, PIP_OFFLINE="1")

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    calls = log.read_text().splitlines()
    assert calls == [
        "pip install --quiet -c constraints.txt -e .[notebook]",
        "jupyter lab notebooks/session_analysis.ipynb",
        "jupyter lab notebooks/session_analysis.ipynb",
    ], calls


def test_make_notebook_installs_again_after_the_base_install_is_redone(tmp_path):
    log = _checkout(tmp_path)
    assert _make_notebook(tmp_path).returncode == 0
    # the base install ran again (pyproject.toml changed): its stamp is newer than the notebook's
    _age(tmp_path / ".venv" / ".installed-notebook", seconds=200)
    _age(tmp_path / ".venv" / ".installed-demo", seconds=100)

    again = _make_notebook(tmp_path)

    assert again.returncode == 0, again.stdout + again.stderr
    pips = [call for call in log.read_text().splitlines() if call.startswith("pip ")]
    assert pips == ["pip install --quiet -c constraints.txt -e .[notebook]"] * 2, pips
