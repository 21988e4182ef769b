"""The fake API is the only part that needs Django: `demo` and `fake-api` without the `fake` extra
stop with one line naming it, and `run` never imports Django, DRF or waitress. Real processes; the
extra is hidden by a folder whose `django`, `rest_framework` and `waitress` fail to import, as
they would when not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import warm
from support.processes import CLI, cli_env, run_cli

pytestmark = pytest.mark.e2e

HIDDEN = ("django", "rest_framework", "waitress")


def _without_fake_extra(tmp_path: Path) -> str:
    """A folder to put first on PYTHONPATH in which the fake extra's packages cannot be imported."""
    folder = tmp_path / "no-fake-extra"
    for package in HIDDEN:
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(f"raise ImportError(\"No module named '{package}'\")\n")
    return str(folder)


@pytest.mark.parametrize("command", [["demo", "--db", "demo.duckdb"], ["fake-api", "--port", "0"]])
def test_demo_and_fake_api_without_the_extra_exit_2_naming_it(tmp_path, command):
    result = run_cli(tmp_path, *command, PYTHONPATH=_without_fake_extra(tmp_path))

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "fake" in lines[0] and "cekura-sessions[fake]" in lines[0] and "Traceback" not in result.stderr, lines
    assert not (tmp_path / "demo.duckdb").exists()


def test_run_never_imports_django(tmp_path, api):
    """A whole night into DuckDB in a process where importing Django fails: it must not matter."""
    result = warm.run(
        [*CLI, "run", "--base-url", api.url, "--db", str(tmp_path / "night.duckdb"), "--no-models"],
        env=cli_env(tmp_path, PYTHONPATH=_without_fake_extra(tmp_path)), capture_output=True, text=True,
        timeout=300, cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert "django" not in result.stderr.lower(), result.stderr


def test_cli_module_imports_no_django():
    code = ("import sys, cekura_sessions.cli.main, cekura_sessions.run.night; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'waitress')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.stdout.strip() == "[]", result.stdout + result.stderr
