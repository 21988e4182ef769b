"""Bad configuration through the CLI: exit 2, exactly one line on stderr that says what to fix,
no traceback, nothing on stdout.

Every case is a real `python -m cekura_sessions.cli run` subprocess with a clean environment in
its own empty folder (so no `.dlt/` of this repository is read). The cases need no API (each must
stop before the first request), so they are started together and each test reads its own result.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import warm
from support.processes import CLI
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the CLI in subprocesses

PREFIX = "cekura-sessions: "


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...] = ()
    env: dict[str, str | None] = field(default_factory=dict)  # None removes the variable
    says: tuple[str, ...] = ()  # the line must name these (what is wrong, what to set)
    db: str | None = "{folder}/cekura.duckdb"  # None: no --db option


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# if a case wrongly went on to the network it fails fast here instead of waiting on DNS
UNUSED_API = f"http://127.0.0.1:{_closed_port()}"

CASES: dict[str, Case] = {
    "no-key": Case(env={"CEKURA_API_KEY": None}, says=("no API key", "CEKURA_API_KEY")),
    "empty-key": Case(env={"CEKURA_API_KEY": ""}, says=("CEKURA_API_KEY", "empty")),
    "blank-key": Case(env={"CEKURA_API_KEY": "   "}, says=("CEKURA_API_KEY", "empty")),
    "base-url-not-a-url": Case(args=("--base-url", "notaurl"), says=("base URL", "'notaurl'", "https://")),
    "base-url-ftp": Case(args=("--base-url", "ftp://x"), says=("base URL", "'ftp://x'", "https://")),
    "base-url-without-host": Case(args=("--base-url", "https://"), says=("base URL", "https://")),
    "base-url-from-env": Case(env={"CEKURA_BASE_URL": "notaurl"}, says=("base URL", "'notaurl'")),
    "base-url-broken-ipv6": Case(args=("--base-url", "http://[::1"), says=("base URL", "http://[::1")),
    "project-id-text": Case(args=("--project-id", "abc"), says=("project ids", "'abc'", "--project-id")),
    "project-id-decimal": Case(args=("--project-id", "12", "--project-id", "1.5"), says=("'1.5'", "--project-id")),
    "project-ids-env": Case(env={"CEKURA_PROJECT_IDS": "1,x"}, says=("project ids", "'x'", "CEKURA_PROJECT_IDS")),
    "concurrency-zero": Case(args=("--concurrency", "0"), says=("--concurrency",)),
    "db-folder-missing": Case(db="{folder}/no-such-folder/cekura.duckdb", says=("no-such-folder", "does not exist")),
    "db-folder-missing-from-env": Case(
        db=None, env={"CEKURA_DB": "{folder}/no-such-folder/cekura.duckdb"}, says=("no-such-folder", "CEKURA_DB")
    ),
    "db-parent-is-a-file": Case(db="{folder}/a-file/cekura.duckdb", says=("a-file",)),
    "db-is-a-folder": Case(db="{folder}", says=("cannot open",)),
    "db-under-proc": Case(db="/proc/cekura-sessions-test.duckdb", says=("/proc/cekura-sessions-test.duckdb",)),
    "db-under-sys": Case(db="/sys/cekura-sessions-test.duckdb", says=("/sys/cekura-sessions-test.duckdb",)),
    "key-with-a-newline": Case(env={"CEKURA_API_KEY": "abc\ndef"}, says=("CEKURA_API_KEY", "control characters")),
    "key-with-a-zero-width-space": Case(env={"CEKURA_API_KEY": "abc\u200bdef"},
                                        says=("CEKURA_API_KEY", "invisible or non-ASCII", "position 4")),
    "key-with-a-non-ascii-letter": Case(env={"CEKURA_API_KEY": "clé-123"}, says=("CEKURA_API_KEY", "non-ASCII")),
    "project-id-zero": Case(args=("--project-id", "0"), says=("positive", "--project-id")),
    "project-id-negative-env": Case(env={"CEKURA_PROJECT_IDS": "3,-5"}, says=("positive", "-5", "CEKURA_PROJECT_IDS")),
    "base-url-with-a-query": Case(args=("--base-url", "https://api.cekura.ai?x=1"), says=("base URL", "query string")),
    "base-url-with-a-fragment": Case(args=("--base-url", "https://api.cekura.ai/#top"), says=("base URL", "fragment")),
    "ca-bundle-missing": Case(
        env={"REQUESTS_CA_BUNDLE": "{folder}/no-such.pem"}, says=("no-such.pem", "REQUESTS_CA_BUNDLE", "does not exist")
    ),
    # an https API (a loopback one never goes through a proxy); refused before any request
    "proxy-not-a-url": Case(
        args=("--base-url", "https://api.cekura.ai"),
        env={"HTTPS_PROXY": "ftp://user:secret@proxy.internal:21", "NO_PROXY": ""}, says=("proxy", "http://")
    ),
}



def _env(case: Case, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEKURA_", "SOURCES__", "DESTINATION__"))}
    env.update(CEKURA_API_KEY=API_KEY, RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(folder / "dlt-data"))
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.format(folder=folder)
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    running = {}
    for name, case in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / "a-file").write_text("not a folder")
        args = list(case.args)
        if case.db is not None:
            args += ["--db", case.db.format(folder=folder)]
        if "--base-url" not in args and "CEKURA_BASE_URL" not in case.env:
            args += ["--base-url", UNUSED_API]
        running[name] = warm.Popen(
            [*CLI, "run", *args], env=_env(case, folder), cwd=folder,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    finished = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        finished[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return finished


@pytest.mark.parametrize("name", list(CASES))
def test_bad_configuration_exits_2_with_one_line_that_says_what_to_fix(results, name):
    result, case = results[name], CASES[name]
    lines = result.stderr.splitlines()

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {result.stderr}"
    assert lines[0].startswith(PREFIX), lines[0]
    missing = [s for s in case.says if s not in lines[0]]
    assert missing == [], f"{lines[0]!r} does not say {missing}"
    assert result.stdout == "", result.stdout
    assert API_KEY not in result.stderr

