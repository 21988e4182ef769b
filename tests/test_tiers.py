"""The test suite's own rules: what tests share comes from support/, never from conftest.py, and
a fast module (one not marked e2e as a whole) loads without dlt, so `make test-fast` needs none.

The dlt rule is checked in a fresh interpreter (this process has long since imported dlt for
other tests, so `sys.modules` here proves nothing), forked once per module, which names the file
whose import statement first reached for dlt.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_modules(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _module_is_e2e(tree: ast.Module) -> bool:
    """`pytestmark = pytest.mark.e2e` (alone or in a list) at module level."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            marks = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            return any(ast.unparse(mark) == "pytest.mark.e2e" for mark in marks)
    return False


def _fast_modules() -> list[str]:
    modules = []
    for path in sorted(TESTS.glob("test_*.py")):
        if not _module_is_e2e(ast.parse(path.read_text(encoding="utf-8"))):
            modules.append(path.stem)
    return modules


# Imports the libraries every test module shares (none imports dlt, which it checks), then forks
# once per module named: the child imports it and prints {"module": ..., "importer": the file whose
# import statement first asked for dlt, or ""}, one JSON line. Why a fork: a new interpreter per
# module spent about 0.8 s of CPU importing pytest, pandas and DuckDB again, 28 times a suite.
PROBE = """
import importlib, json, os, sys, traceback

for name in ("pytest", "duckdb", "pandas", "pyarrow", "numpy", "hypothesis", "requests"):
    importlib.import_module(name)
assert not [n for n in sys.modules if n == "dlt" or n.startswith("dlt.")], "a shared library imported dlt"

class FirstDltImporter:
    file = ""

    def find_spec(self, name, path=None, target=None):
        if not self.file and (name == "dlt" or name.startswith("dlt.")):
            frames = [f.filename for f in traceback.extract_stack()[:-1] if not f.filename.startswith("<")]
            self.file = frames[-1] if frames else "?"
        return None

for module in sys.argv[1:]:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        watch = FirstDltImporter()
        sys.meta_path.insert(0, watch)
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        print(json.dumps({"module": module, "importer": watch.file}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        sys.exit(f"importing {module} failed")
"""


def test_no_test_imports_from_conftest():
    offenders = [
        str(path.relative_to(TESTS))
        for path in _sources()
        if any(name == "conftest" or name.startswith("conftest.")
               for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"))))
    ]
    assert offenders == [], f"import from support/ instead of conftest: {offenders}"


def test_every_module_named_to_start_first_is_a_test_module():
    from support.schedule import LONGEST_FIRST

    missing = [name for name in LONGEST_FIRST if not (TESTS / f"{name}.py").is_file()]
    assert missing == [], f"support/schedule.py's LONGEST_FIRST names modules the suite does not have: {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST), "a module named twice"


def test_the_tier_rules_see_both_tiers():
    fast = _fast_modules()
    assert "test_tiers" in fast and "test_transport" in fast, fast
    assert "test_pipeline" not in fast and "test_wheel" not in fast, fast


@pytest.fixture(scope="module")
def first_dlt_importers() -> dict[str, str]:
    """{module: the file whose import first asked for dlt, or ""} for conftest and every fast module."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "conftest", *_fast_modules()], cwd=TESTS, env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return {answer["module"]: answer["importer"] for answer in map(json.loads, result.stdout.splitlines())}


@pytest.mark.parametrize("module", ["conftest", *_fast_modules()])
def test_fast_module_imports_without_dlt(first_dlt_importers, module):
    importer = Path(first_dlt_importers[module]).as_posix() if first_dlt_importers[module] else None
    assert importer is None, f"importing {module} imports dlt, first in {importer}"
