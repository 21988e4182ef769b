"""The one line a run ends with names where things came from: the URL it could not reach (also the
default one, never "the configured API"), and the variable or file the key came from when the key
is refused, a placeholder or blank. A placeholder key is refused before any request.

Real `python -m cekura_sessions.cli run` processes in empty folders (no `.dlt/` of this
repository), against the fake API on loopback; they are started together, and each test reads its
own result (one case waits out the default retry policy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi
from support import warm
from support.ports import refused_port
from support.processes import CLI
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the CLI in subprocesses, the pipeline (dlt) in process

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SECRETS = ROOT / ".dlt" / "example.secrets.toml"
PLACEHOLDER = tomllib.loads(EXAMPLE_SECRETS.read_text())["sources"]["cekura"]["api_key"]
WRONG_KEY = "wrong-key-4d1b"
OWN_VARIABLES = ("CEKURA_", "SOURCES__", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy",
                 "http_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class Case:
    env: dict[str, str] = field(default_factory=dict)  # "{api}" and "{proxy}" are filled in
    secrets: str | None = None  # .dlt/secrets.toml of the run's folder: "example" or a key
    base_url: bool = True  # False: no --base-url, so the default applies
    untouched: bool = False  # aim at the API that must see no request


CASES = {
    "placeholder-in-secrets-file": Case(secrets="example", untouched=True),
    "placeholder-in-env": Case(env={"CEKURA_API_KEY": PLACEHOLDER}, untouched=True),
    "refused-key-from-env": Case(env={"CEKURA_API_KEY": WRONG_KEY}),
    "refused-key-from-dlt-variable": Case(env={"SOURCES__CEKURA__API_KEY": WRONG_KEY}),
    "refused-key-from-secrets-file": Case(secrets=WRONG_KEY),
    "blank-key-in-secrets-file": Case(secrets="  "),
    "default-url-behind-a-dead-proxy": Case(env={"CEKURA_API_KEY": API_KEY, "HTTPS_PROXY": "{proxy}"}, base_url=False),
}


def _env(case: Case, folder: Path, api_url: str, proxy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    env.update(RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(folder / "dlt-data"))
    env.update({name: value.format(api=api_url, proxy=proxy) for name, value in case.env.items()})
    return env


def _prepare(case: Case, folder: Path) -> None:
    if case.secrets is None:
        return
    (folder / ".dlt").mkdir()
    if case.secrets == "example":  # the file as a user copies it, unedited
        shutil.copy(EXAMPLE_SECRETS, folder / ".dlt" / "secrets.toml")
    else:
        (folder / ".dlt" / "secrets.toml").write_text(f'[sources.cekura]\napi_key = "{case.secrets}"\n')


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Iterator[tuple[FakeCekuraApi, FakeCekuraApi, int, dict[str, subprocess.CompletedProcess]]]:
    dataset = generate(DataSpec(projects=2, sessions_per_project=3))
    with FakeCekuraApi(dataset, api_key=API_KEY) as api, FakeCekuraApi(dataset, api_key=PLACEHOLDER) as untouched, \
            refused_port() as proxy_port:
        running = {}
        for name, case in CASES.items():
            folder = tmp_path_factory.mktemp(name)
            _prepare(case, folder)
            url = untouched.url if case.untouched else api.url
            args = ["run", "--db", str(folder / "cekura.duckdb")] + (["--base-url", url] if case.base_url else [])
            running[name] = warm.Popen(
                [*CLI, *args], env=_env(case, folder, api.url, f"http://127.0.0.1:{proxy_port}"), cwd=folder,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        done = {}
        for name, process in running.items():
            out, err = process.communicate(timeout=180)
            done[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        yield api, untouched, proxy_port, done


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.splitlines()[-1]


@pytest.mark.parametrize("name, origin", [
    pytest.param("placeholder-in-secrets-file", ".dlt/secrets.toml", id="secrets-file"),
    pytest.param("placeholder-in-env", "CEKURA_API_KEY", id="env"),
])
def test_placeholder_key_is_refused_before_any_request_naming_where_it_came_from(runs, name, origin):
    _, untouched, _, done = runs
    result = done[name]

    assert result.stderr.splitlines() == [
        f"cekura-sessions: the API key in {origin} is still the placeholder of .dlt/example.secrets.toml; "
        f"put your Cekura API key in {origin}"
    ], result.stderr
    assert result.returncode == 2
    assert untouched.requests_log == [], "a run sent the placeholder key (this API accepts only it)"


@pytest.mark.parametrize("name, origin", [
    pytest.param("refused-key-from-env", "CEKURA_API_KEY", id="CEKURA_API_KEY"),
    pytest.param("refused-key-from-dlt-variable", "SOURCES__CEKURA__API_KEY", id="SOURCES__CEKURA__API_KEY"),
    pytest.param("refused-key-from-secrets-file", ".dlt/secrets.toml", id="secrets-file"),
])
def test_refused_key_hint_names_where_the_key_came_from(runs, name, origin):
    api, _, _, done = runs
    result = done[name]

    assert _last_line(result) == (f"cekura-sessions: the API at {api.url} refused the key (HTTP 401); "
                                  f"check the key in {origin}")
    assert WRONG_KEY not in result.stderr + result.stdout


def test_blank_key_in_secrets_file_names_the_file(runs):
    *_, done = runs

    assert done["blank-key-in-secrets-file"].stderr.splitlines() == [
        "cekura-sessions: .dlt/secrets.toml is set but empty; set it to your Cekura API key"
    ]


def test_unreachable_default_base_url_is_named_not_the_configured_api(runs):
    *_, proxy_port, done = runs

    assert _last_line(done["default-url-behind-a-dead-proxy"]) == (
        "cekura-sessions: nothing loaded: listing projects failed: cannot reach https://api.cekura.ai through the "
        f"proxy http://127.0.0.1:{proxy_port} (HTTPS_PROXY): it refused the connection (nothing listens on its "
        "port); check that proxy, or list api.cekura.ai in NO_PROXY to connect directly"
    )


def test_unreachable_api_resolved_by_dlt_is_named_in_process(run_night, monkeypatch):
    """A caller that leaves the base URL to dlt (RunConfig.base_url None) still reads the URL."""
    for name in OWN_VARIABLES[2:]:
        monkeypatch.delenv(name, raising=False)
    with refused_port() as port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        outcome = run_night(base_url=None)

    assert outcome.exit_code == 2, outcome.message
    assert outcome.message.startswith("nothing loaded: listing projects failed: cannot reach https://api.cekura.ai "
                                      f"through the proxy http://127.0.0.1:{port} (HTTPS_PROXY)"), outcome.message
    assert "the configured API" not in outcome.message
