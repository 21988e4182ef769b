"""The suite's warm CLI processes (support/warm.py) behave as new interpreters do: same streams,
exit status and answer to a signal, their own environment and working folder."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import warm
from support.processes import CLI, cli_env

pytestmark = pytest.mark.e2e  # the server imports dlt

COMMANDS = [
    pytest.param(["--version"], id="version"),
    pytest.param(["status", "--db", "missing.duckdb"], id="status-of-a-missing-file"),
    pytest.param(["run", "--concurrency", "0"], id="usage-error"),
    pytest.param(["run", "--db", "x.duckdb"], id="config-error-from-the-environment"),
]


# dlt's own command line (test_secrets.py and test_dlt_folder.py read what it prints)
DLT_COMMANDS = [
    pytest.param(["--version"], id="version"),
    pytest.param(["pipeline", "--pipelines-dir", "none", "cekura_sessions", "info"], id="info-of-a-missing-pipeline"),
]


def _same_answer(tmp_path: Path, command: list[str]) -> None:
    env = cli_env(tmp_path, CEKURA_API_KEY="", CEKURA_BASE_URL="notaurl")
    cold = subprocess.run(command, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    hot = warm.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (hot.returncode, hot.stdout, hot.stderr) == (cold.returncode, cold.stdout, cold.stderr)


@pytest.mark.parametrize("args", COMMANDS)
def test_a_warm_process_answers_as_a_new_interpreter(tmp_path, args):
    _same_answer(tmp_path, [*CLI, *args])


@pytest.mark.parametrize("args", DLT_COMMANDS)
def test_a_warm_dlt_command_answers_as_a_new_interpreter(tmp_path, args):
    _same_answer(tmp_path, [*warm.DLT, *args])


def test_a_warm_process_has_its_own_pid_and_answers_a_signal(tmp_path):
    process = warm.Popen([*CLI, "fake-api", "--port", "0"], env=cli_env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert "fake Cekura API at http://127.0.0.1:" in process.stdout.readline()
        assert process.pid != warm._server[0].pid and process.poll() is None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0  # Ctrl-C stops the fake API cleanly
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_what_changes_an_interpreters_start_gets_a_new_one(tmp_path):
    assert warm._warm([*CLI, "status"], {"env": cli_env(tmp_path)})
    assert warm._warm([*warm.DLT, "--version"], {"env": cli_env(tmp_path)})
    assert not warm._warm([*CLI, "status"], {"env": cli_env(tmp_path, TZ="Asia/Kolkata")})
    assert not warm._warm([*CLI, "status"], {"env": cli_env(tmp_path, PYTHONIOENCODING="latin-1")})
    assert not warm._warm([*CLI, "status"], {"preexec_fn": print})
    assert not warm._warm([sys.executable, "-c", "pass"], {})


def _import_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes a module runs as it is imported: all but function bodies (their decorators and
    default values do run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            arguments = node.args
            kept = [*arguments.defaults, *(d for d in arguments.kw_defaults if d is not None)]
            kept += getattr(node, "decorator_list", [])
            for child in kept:
                yield child
                yield from _import_time_nodes(child)
            continue
        yield node
        yield from _import_time_nodes(node)


def test_no_project_module_reads_the_environment_as_it_is_imported():
    """The warm server imports the project once for every process it forks (support/warm_server.py):
    a read of the environment at import would give each process the server's."""
    import cekura_sessions

    package = Path(cekura_sessions.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in _import_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            text = ast.unparse(node) if isinstance(node, (ast.Attribute, ast.Call)) else ""
            if text in ("os.environ", "os.getenv") or text.startswith(("os.environ.", "os.getenv(", "environ.get(")):
                found.append(f"{path.relative_to(package)}:{node.lineno}: {text}")
    assert found == [], found
