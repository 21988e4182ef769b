"""The API key and the members' personal data stay where they belong.

The key (the canary in support.settings.API_KEY) may travel only in the X-CEKURA-API-KEY header, only
over https or to loopback, and must never be written anywhere: not to stdout/stderr (even at
DEBUG), not to error messages, not to the DuckDB file, not to dlt's pipelines folder, and not to
what `dlt pipeline ... trace/info` prints. Stored bytes may be compressed (DuckDB pages, parquet,
gzip, dlt's zlib state), so files are searched both raw and decoded.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow.parquet as pq
import pytest
from cekura_sessions import logs, settings
from cekura_sessions.api import endpoints
from cekura_sessions.cli import main as cli
from cekura_sessions.fake.data import FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from dlt.common.versioned_state import decompress_state
from support import expected, nights, warm
from support.ports import refused_port
from support.processes import CLI
from support.secrets import files_holding
from support.settings import API_KEY, DATASET_SPEC, TEST_RETRY

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome

pytestmark = pytest.mark.e2e  # the real pipeline (dlt), the CLI in subprocesses and dlt's own CLI

CANARY = API_KEY.encode()


# --- where a secret could end up ----------------------------------------------------------------


def _database_text(db_path: Path) -> str:
    """Every value of every table in every schema, as text, after a CHECKPOINT; dlt's
    compressed state column decoded."""
    with duckdb.connect(str(db_path)) as con:
        con.execute("checkpoint")
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'"
        ).fetchall()
        texts = [str(con.execute(f'select cast(t as varchar) from "{s}"."{t}" as t').fetchall()) for s, t in tables]
        if ("cekura_raw", "_dlt_pipeline_state") in tables:
            for (state,) in con.execute("select state from cekura_raw._dlt_pipeline_state").fetchall():
                texts.append(repr(decompress_state(state)))
    return "\n".join(texts)


def _dlt_cli_outputs(pipelines_dir: Path) -> dict[str, str]:
    """What `dlt pipeline` prints about our pipeline: trace and info, verbose (a superset of the
    plain forms: it adds the config and secret values dlt resolved)."""
    env = {**_clean_env(), "RUNTIME__DLTHUB_TELEMETRY": "false"}
    pipeline = [*warm.DLT, "pipeline", "--pipelines-dir", str(pipelines_dir)]
    commands = {
        "trace -v": [*pipeline, "-v", settings.PIPELINE_NAME, "trace"],
        "info -vv": [*pipeline, settings.PIPELINE_NAME, "info", "-vv"],
    }
    running = {
        name: warm.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, cmd in commands.items()
    }
    outputs = {}
    for name, process in running.items():
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, f"dlt pipeline {name} failed: {out}"
        assert f"Found pipeline {settings.PIPELINE_NAME}" in out, out
        outputs[name] = out
    return outputs


def _assert_no_secret_anywhere(tmp_path: Path, db_path: Path, pipelines_dir: Path, needle: str) -> None:
    if db_path.exists():
        assert needle not in _database_text(db_path), "the key is in a database value"
    assert files_holding(tmp_path, needle.encode()) == [], "the key is in these files"
    if pipelines_dir.exists():
        for name, out in _dlt_cli_outputs(pipelines_dir).items():
            assert needle not in out, f"`dlt pipeline {name}` prints the key"


def test_leak_search_finds_a_planted_key(tmp_path):
    """The searches above must be able to fail: plant the key where compression would hide it."""
    import pyarrow as pa
    from dlt.common.versioned_state import compress_state

    db_path = tmp_path / "planted.duckdb"
    with duckdb.connect(str(db_path)) as con:
        con.execute("create table t as select ? || i::varchar as v from range(50000) r(i)", [API_KEY])
    pq.write_table(pa.table({"v": [API_KEY] * 1000}), tmp_path / "planted.parquet", compression="zstd")
    (tmp_path / "planted.gz").write_bytes(gzip.compress(API_KEY.encode() * 10))
    (tmp_path / "state.json").write_text(f'{{"state": "{compress_state({"k": API_KEY, "_state_version": 1})}"}}')

    assert API_KEY in _database_text(db_path)
    found = files_holding(tmp_path, CANARY)
    assert {f.split(" (")[0] for f in found} >= {"planted.parquet", "planted.gz", "state.json"}, found


# --- the CLI, at DEBUG, in four situations -----------------------------------------------------


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CEKURA_", "SOURCES__", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))}


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = _clean_env()
    env.update(CEKURA_API_KEY=API_KEY, RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(tmp_path / "dlt-data"))
    env.update(extra)
    return env


def _cli_run(tmp_path: Path, base_url: str, db_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return warm.run(
        [*CLI, "--log-level", "DEBUG", "run", "--base-url", base_url, "--db", str(db_path), "--db-wait", "1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


CLI_SITUATIONS = [
    pytest.param("succeeds", 0, id="run-succeeds"),
    pytest.param("succeeds-key-from-dlt-config", 0, id="run-succeeds-key-via-SOURCES__CEKURA__API_KEY"),
    pytest.param("auth-fails", 2, id="run-fails-on-auth"),
    pytest.param("project-faults", 1, id="run-fails-on-faults-with-retries"),
]


@pytest.mark.parametrize(("situation", "exit_code"), CLI_SITUATIONS)
def test_key_never_leaves_the_header_in_cli_runs(tmp_path, api, dataset, db_path, situation, exit_code):
    env = _cli_env(tmp_path)
    if situation == "succeeds-key-from-dlt-config":
        del env["CEKURA_API_KEY"]
        env["SOURCES__CEKURA__API_KEY"] = API_KEY
    victim, throttled = expected.listed_project_ids(dataset)[:2]
    if situation == "project-faults":
        # the CLI retries with the default policy: a project that fails at once keeps this quick
        api.faults = Faults(always={victim: "403"}, script={("sessions", throttled): ["503", "drop"]})
    if situation == "auth-fails":
        with FakeCekuraApi(dataset, api_key="other") as other:
            result = _cli_run(tmp_path, other.url, db_path, env)
    else:
        result = _cli_run(tmp_path, api.url, db_path, env)

    assert result.returncode == exit_code, result.stderr
    assert "DEBUG" in result.stderr, "the run did not log at DEBUG"
    assert API_KEY not in result.stdout
    assert API_KEY not in result.stderr
    pipelines_dir = db_path.with_name(db_path.name + ".dlt")  # dlt's folder of this database, beside it
    assert pipelines_dir.is_dir(), "the run made no dlt folder to search"
    _assert_no_secret_anywhere(tmp_path, db_path, pipelines_dir, API_KEY)


def test_key_never_leaves_the_header_when_the_run_is_killed(tmp_path, api, db_path):
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    marker = db_path.with_name(f"{db_path.name}.paused-load")
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = warm.Popen(
            [*CLI, "--log-level", "DEBUG", "run", "--base-url", api.url, "--db", str(db_path)],
            env=_cli_env(tmp_path, CEKURA_TEST_HOOK=f"load:{marker}"), cwd=tmp_path, stdout=stdout, stderr=stderr,
        )
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the run never reached the load"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    pipelines_dir = db_path.with_name(db_path.name + ".dlt")  # dlt's folder of this database, beside it
    assert list(pipelines_dir.rglob("*.parquet")), "the killed run left no load package to search"
    assert API_KEY not in out.read_text() + err.read_text()
    _assert_no_secret_anywhere(tmp_path, db_path, pipelines_dir, API_KEY)


# --- error messages and logs of in-process runs ------------------------------------------------


IN_PROCESS_FAILURES = [
    pytest.param("auth", 2, id="auth-refused"),
    pytest.param("faults", 1, id="project-always-500"),
    pytest.param("unreachable", 2, id="api-unreachable"),
    pytest.param("insecure", 2, id="plain-http-to-remote-host"),
]


@pytest.mark.parametrize(("failure", "exit_code"), IN_PROCESS_FAILURES)
def test_key_is_absent_from_messages_ledger_and_log_records(run_night, api, dataset, db_path, caplog, failure,
                                                            exit_code):
    overrides: dict[str, object] = {}
    if failure == "faults":
        api.faults = Faults(always={expected.listed_project_ids(dataset)[0]: "500"})
    elif failure == "insecure":
        overrides["base_url"] = "http://example.invalid"

    with caplog.at_level(logging.DEBUG), refused_port() as port:
        if failure == "auth":
            with FakeCekuraApi(dataset, api_key="other") as other:
                outcome = run_night(base_url=other.url, **overrides)
        elif failure == "unreachable":
            outcome = run_night(base_url=f"http://127.0.0.1:{port}")
        else:
            outcome = run_night(**overrides)

    assert outcome.exit_code == exit_code, outcome.message
    assert outcome.message, "a failed run must say why"
    assert API_KEY not in outcome.message
    assert API_KEY not in repr(outcome.report) + repr(outcome.checks)
    assert API_KEY not in caplog.text, "a log record carries the key (before any masking)"
    assert [r for r in caplog.records if API_KEY in repr(r.args) or API_KEY in str(r.exc_info)] == []
    if db_path.exists():
        assert API_KEY not in _database_text(db_path)


def test_client_repr_and_errors_do_not_show_the_key(api):
    from cekura_sessions.api.client import CekuraClient
    from cekura_sessions.api.errors import InsecureUrlError

    client = CekuraClient(api.url, API_KEY, policy=TEST_RETRY)
    assert API_KEY not in repr(client) and API_KEY not in str(client)
    with pytest.raises(InsecureUrlError) as refused:
        CekuraClient("http://example.invalid", API_KEY)
    assert API_KEY not in str(refused.value) and API_KEY not in repr(refused.value)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_logs_mask_the_key_as_defence_in_depth(api, tmp_path, monkeypatch, capfd, log_format):
    root, dlt_logger = logging.getLogger(), logging.getLogger("dlt")
    saved = (root.handlers[:], root.level, dlt_logger.handlers[:], dlt_logger.level, dlt_logger.propagate)
    monkeypatch.setenv("CEKURA_API_KEY", API_KEY)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    try:
        # the line under test is logged after the run, through the handlers the command set up;
        # the run only gets there, so it reads the listings alone (the night's own lines, the
        # details' among them, are searched at DEBUG in test_key_never_leaves_the_header_in_cli_runs)
        code = cli.main([
            "--log-format", log_format, "run", "--base-url", api.url, "--db", str(tmp_path / "c.duckdb"),
            "--no-models", "--no-details",
        ])
        logging.getLogger("urllib3.connectionpool").warning("sent headers {'X-CEKURA-API-KEY': '%s'}", API_KEY)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        dlt_logger.handlers[:], dlt_logger.level, dlt_logger.propagate = saved[2], saved[3], saved[4]
        logs._SECRETS.discard(API_KEY)
    err = capfd.readouterr().err
    assert code == 0, err
    assert "sent headers" in err, err
    assert API_KEY not in err, "a log line that carries the key is written in clear"


# --- where the key may travel -------------------------------------------------------------------


class _Recorder(socketserver.ThreadingTCPServer):
    """A loopback listener that records each request head and answers with a fixed response:
    a stand-in API (to see what the client sends) or an HTTP proxy (to see whether it is used)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: bytes) -> None:
        self.answer, self.heads, self.lock = answer, [], threading.Lock()
        super().__init__(("127.0.0.1", 0), _RecordHead)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _RecordHead(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                break
            head += chunk
        with self.server.lock:
            self.server.heads.append(head)
        self.request.sendall(self.server.answer)


@pytest.fixture
def recorder_factory():
    started: list[_Recorder] = []

    def _start(answer: bytes) -> _Recorder:
        started.append(_Recorder(answer))
        return started[-1]

    yield _start
    for recorder in started:
        recorder.close()


_UNAUTHORIZED = (b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 30\r\n"
                 b"Connection: close\r\n\r\n{\"detail\": \"Invalid API key.\"}")
_PROXY_REFUSES = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def test_key_travels_only_in_its_header(run_night, recorder_factory):
    fake_api = recorder_factory(_UNAUTHORIZED)

    outcome = run_night(base_url=fake_api.url)

    assert outcome.exit_code == 2, outcome.message
    assert len(fake_api.heads) == 1, fake_api.heads
    lines = fake_api.heads[0].decode("latin-1").split("\r\n")
    carrying = [line for line in lines if API_KEY in line]
    assert carrying == [f"{endpoints.API_KEY_HEADER}: {API_KEY}"], lines
    assert lines[0] == f"GET {endpoints.PROJECTS_PATH} HTTP/1.1", lines[0]


_REDIRECT = (b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.example/user/v1/projects/?token=x\r\n"
             b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def test_a_redirect_is_not_followed_and_says_where_it_points(run_night, recorder_factory):
    fake_api = recorder_factory(_REDIRECT)

    outcome = run_night(base_url=fake_api.url)

    assert outcome.exit_code == 2, outcome.message
    assert len(fake_api.heads) == 1, "the redirect was followed"
    assert "HTTP 301" in outcome.message and "https://elsewhere.example/user/v1/projects/" in outcome.message
    assert "token=x" not in outcome.message and "set the base URL" in outcome.message


@pytest.mark.parametrize("base_url", [
    pytest.param("http://example.invalid", id="remote-name"),
    pytest.param("http://10.0.0.7:8080", id="private-address"),
    pytest.param("http://localhost.example.com", id="name-starting-with-localhost"),
    pytest.param("http://127.0.0.1.nip.io", id="name-starting-with-127"),
])
def test_plain_http_to_a_remote_host_is_refused_before_any_request(run_night, recorder_factory, monkeypatch, db_path,
                                                                  base_url):
    proxy = recorder_factory(_PROXY_REFUSES)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    outcome = run_night(base_url=base_url)

    host = base_url.split("//")[1].split(":")[0]
    assert outcome.exit_code == 2, outcome.message
    assert outcome.message == f"refusing to send the API key over plain http to {host}; use https"
    assert proxy.heads == [], "a request went out (through the proxy) before the URL was refused"
    assert outcome.report.stats.requests == 0


def test_plain_http_refusal_is_one_line_from_the_cli(tmp_path, recorder_factory):
    proxy = recorder_factory(_PROXY_REFUSES)
    env = _cli_env(tmp_path, HTTP_PROXY=proxy.url, http_proxy=proxy.url)

    result = _cli_run(tmp_path, "http://example.invalid", tmp_path / "c.duckdb", env)

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "cekura-sessions: refusing to send the API key over plain http to example.invalid; use https"
    ], result.stderr
    assert proxy.heads == []


# --- nights on loopback, shared ---------------------------------------------------------------
# A night of the suite's data costs about a second of CPU. The tests below each read their own
# part of a whole night against the fake API on loopback: that plain http to loopback is allowed,
# that no request went to the proxy the environment names, that no member's personal data
# reached the database or dlt's folder. One night per loopback host serves them, run once for
# the module as conftest.py's `run_night` runs one (the models built), with every proxy variable
# naming a recording proxy; the tests that are not about the proxy check that it saw nothing,
# so their night is one that read the fake API directly, as their own would.

_PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@dataclass(frozen=True)
class _LoopbackNight:
    dataset: FakeDataset  # what the fake API served
    outcome: RunOutcome
    folder: Path  # the night's database (cekura.duckdb) and dlt's folder (pipelines/), nothing else
    requests: int  # the requests the fake API answered
    proxy_heads: list[bytes]  # the requests that reached the proxy


def _loopback_night(folder: Path, host: str) -> _LoopbackNight:
    dataset = generate(DATASET_SPEC)
    proxy = _Recorder(_PROXY_REFUSES)
    try:
        with FakeCekuraApi(dataset, api_key=API_KEY, faults=Faults()) as api, pytest.MonkeyPatch.context() as env:
            for name in _PROXY_VARIABLES:
                env.setenv(name, proxy.url)
            env.delenv("NO_PROXY", raising=False)
            env.delenv("no_proxy", raising=False)
            outcome = nights.run(db=folder / "cekura.duckdb", base_url=api.url.replace("127.0.0.1", host),
                                 pipelines_dir=str(folder / "pipelines"))
            requests = api.request_count()
    finally:
        proxy.close()
    return _LoopbackNight(dataset, outcome, folder, requests, list(proxy.heads))


@pytest.fixture(scope="module")
def loopback_nights(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], _LoopbackNight]:
    """`night_of(host)`: the night whose base URL names the fake API by `host`, run on first use."""
    made: dict[str, _LoopbackNight] = {}

    def night_of(host: str) -> _LoopbackNight:
        if host not in made:
            made[host] = _loopback_night(tmp_path_factory.mktemp(f"loopback-{host}-"), host)
        return made[host]

    return night_of


def test_loopback_plain_http_is_allowed(loopback_nights):
    night = loopback_nights("localhost")

    assert night.outcome.exit_code == 0, night.outcome.message
    assert night.outcome.report.stats.requests == 1 + len(expected.listed_project_ids(night.dataset))
    assert night.proxy_heads == [], "the night went through the proxy"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_base_url_never_goes_through_a_proxy(loopback_nights, host):
    night = loopback_nights(host)

    assert night.outcome.exit_code == 0, night.outcome.message
    assert night.proxy_heads == [], "a request went to the proxy, with the key in clear"
    assert night.requests == 1 + len(expected.listed_project_ids(night.dataset))


def test_default_base_url_is_https_so_the_key_is_tunnelled(run_night, recorder_factory, monkeypatch):
    proxy = recorder_factory(_PROXY_REFUSES)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("SOURCES__CEKURA__BASE_URL", raising=False)

    outcome = run_night(base_url=None)

    assert endpoints.DEFAULT_BASE_URL == "https://api.cekura.ai"
    assert outcome.exit_code == 2, outcome.message
    assert API_KEY not in outcome.message
    assert proxy.heads, "the run never tried the default URL"
    first_lines = {head.split(b"\r\n")[0] for head in proxy.heads}
    asked = {re.sub(rb" HTTP/1\.[01]$", b"", line) for line in first_lines}
    assert asked == {b"CONNECT api.cekura.ai:443"}, first_lines
    assert all(CANARY not in head for head in proxy.heads), "the key went to the proxy in clear"


# --- personal data of members never reaches the database ----------------------------------------


def _personal_values(dataset) -> set[str]:
    """Member emails and names, webhook URLs and key-like values the projects endpoint serves."""
    values: set[str] = set()
    for project in dataset.projects:
        organization = project.get("organization") or {}
        for membership in [*project.get("members", []), *organization.get("members", [])]:
            values |= {membership["user"]["email"], membership["user"]["name"]}
        values |= {project["webhook_url"], project["vapi_api_key"]}
    return values


def test_member_emails_webhooks_and_keys_never_reach_the_database(loopback_nights):
    night = loopback_nights("127.0.0.1")  # the fake API at its own address: a plain night of the suite's data
    personal = _personal_values(night.dataset)
    assert sum(v.endswith("@example.com") for v in personal) >= 2, personal
    assert any(v.startswith("https://hooks.example.com/") for v in personal), personal

    assert night.outcome.exit_code == 0, night.outcome.message
    assert night.proxy_heads == [], "the night went through the proxy"
    text = _database_text(night.folder / "cekura.duckdb")
    assert sorted(v for v in personal if v in text) == [], "personal data in database values"
    assert files_holding(night.folder, b"@example.com", *(v.encode() for v in personal)) == []
