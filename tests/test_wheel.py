"""A wheel built from a clean clone installs into a fresh environment and runs from anywhere.

This tests what is COMMITTED: the repository this file belongs to is cloned at HEAD, so changes
not yet committed are not in the wheel. The wheel is built from the clone without network
(no build isolation, no index), installed without dependencies into a new venv of this
interpreter, and the dependencies come from this test environment's site-packages through a .pth
path line. A path line only adds that folder to sys.path; the .pth files inside it (among them
the editable install's, which points at the source tree) are not processed, so the package can
only come from the wheel. Then `demo`, `models` and `check` run from an empty folder elsewhere,
with HOME and DLT_DATA_DIR inside the test's folder so nothing is written outside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # builds and installs a wheel, runs the console command

ROOT = Path(__file__).resolve().parents[1]
SQL_FOLDER = Path("pipelines", "cekura_sessions", "models", "sql")
HANG_GUARD_SECONDS = 300  # only stops a hung step; the whole test takes a few seconds


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would put the source tree on sys.path or
    configure the pipeline; pip stays offline, asks nothing and keeps no cache outside the test."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items()
           if k not in dropped and not k.startswith(("CEKURA_", "SOURCES__", "DESTINATION__", "PIP_"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_CACHE_DIR="1", RUNTIME__DLTHUB_TELEMETRY="false",
               **extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert result.returncode == 0, f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _clone_head(into: Path) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    head = _run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], ROOT, dict(os.environ)).stdout.strip()
    _run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(into)], into.parent, dict(os.environ))
    _run(["git", "-C", str(into), "checkout", "--quiet", "--detach", head], into, dict(os.environ))
    return into


def _fresh_venv(path: Path) -> Path:
    """A venv of this interpreter whose sys.path also holds this environment's site-packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)], path.parent, _clean_env())
    python = path / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                path, _clean_env()).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "_test_environment_dependencies.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    return python


def test_wheel_from_a_clean_clone_runs_demo_models_and_check_from_an_empty_folder(tmp_path):
    clone = _clone_head(tmp_path / "clone")
    shipped_sql = {f"cekura_sessions/models/sql/{p.relative_to(clone / SQL_FOLDER).as_posix()}"
                   for p in (clone / SQL_FOLDER).rglob("*") if p.is_file()}
    assert any(name.endswith(".sql") for name in shipped_sql), f"no SQL in {clone / SQL_FOLDER}"

    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
          "--check-build-dependencies", "-w", str(wheels), str(clone)], tmp_path, _clean_env())
    (wheel,) = wheels.glob("cekura_sessions-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.startswith("cekura_sessions/models/sql/")}
    assert packaged == shipped_sql, f"missing {sorted(shipped_sql - packaged)}, extra {sorted(packaged - shipped_sql)}"

    venv = tmp_path / "venv"
    python = _fresh_venv(venv)
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
          str(wheel)], tmp_path, _clean_env())

    elsewhere, home = tmp_path / "elsewhere", tmp_path / "home"
    elsewhere.mkdir()
    home.mkdir()
    env = _clean_env(HOME=str(home), DLT_DATA_DIR=str(home / "dlt"))
    imported = _run([str(python), "-c", "import cekura_sessions; print(cekura_sessions.__file__)"], elsewhere, env)
    package_file = Path(imported.stdout.strip()).resolve()
    assert package_file.is_relative_to(venv.resolve()), f"cekura_sessions came from {package_file}, not the wheel"
    assert not package_file.is_relative_to(ROOT), package_file

    command = venv / "bin" / "cekura-sessions"
    for args in (["demo", "--db", "demo.duckdb"], ["models", "--db", "demo.duckdb"], ["check", "--db", "demo.duckdb"]):
        _run([str(command), *args], elsewhere, env)
    assert (elsewhere / "demo.duckdb").is_file()
