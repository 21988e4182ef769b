"""A refused key, a firewall's challenge and an untrusted certificate each stop the run with one
line of their own (exit 2), and none is retried: a 401, or a 403 whose `detail` says the key is
invalid or missing (DRF's answer when its authentication class sends no challenge), names where
the key came from; any other 403 fails only its project. The fake API answers DRF's own 401 and
403; the challenges and DRF's other wordings come from a small loopback server of this file's
own, since no API answers them by choice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest
from cekura_sessions.api.client import CekuraClient
from cekura_sessions.api.errors import Untrusted
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, nights
from support.processes import run_cli
from support.settings import API_KEY, TEST_RETRY
from support.tls import self_signed_server

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

WRONG_KEY = "wrong-key-5c1d-never-printed"


def _night(tmp_path, base_url: str, api_key: str = API_KEY, **overrides: object):
    """A night as conftest.py's `load` runs one (support/nights.py's settings, no models), the
    key's origin named CEKURA_API_KEY, as the command names it when that variable gives the key."""
    return nights.run(db=tmp_path / "cekura.duckdb", api_key=api_key, api_key_origin="CEKURA_API_KEY",
                      base_url=base_url, pipelines_dir=str(tmp_path / "pipelines"), build_models=False, **overrides)


@contextmanager
def _answering(status: int, body: bytes, content_type: str,
               headers: tuple[tuple[str, str], ...] = ()) -> Iterator[tuple[str, list[str]]]:
    """(`http://127.0.0.1:<port>`, the paths asked): a loopback server that gives every GET the
    same answer, as a firewall in front of an API does."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("auth", ["401", "403"])
def test_bad_key_stops_the_run_in_one_request_naming_the_key_origin(tmp_path, dataset, auth):
    with FakeCekuraApi(dataset, api_key=API_KEY, auth=auth) as api:
        outcome = _night(tmp_path, api.url, api_key=WRONG_KEY)
        requests = api.request_count()

    said = "(HTTP 401)" if auth == "401" else '(HTTP 403: "Invalid API key.")'
    assert (outcome.exit_code, outcome.message) == (
        2, f"the API at {api.url} refused the key {said}; check the key in CEKURA_API_KEY")
    assert requests == 1, "a refused key was asked again"


def test_bad_key_answered_403_is_one_line_from_the_command(tmp_path, dataset):
    with FakeCekuraApi(dataset, api_key=API_KEY, auth="403") as api:
        result = run_cli(tmp_path, "run", "--base-url", api.url, "--db", str(tmp_path / "c.duckdb"),
                         CEKURA_API_KEY=WRONG_KEY)

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f'cekura-sessions: the API at {api.url} refused the key (HTTP 403: "Invalid API key."); '
        "check the key in CEKURA_API_KEY"], result.stderr
    assert WRONG_KEY not in result.stderr + result.stdout


@pytest.mark.parametrize("detail", [
    pytest.param("Authentication credentials were not provided.", id="not-provided"),
    pytest.param("Incorrect authentication credentials.", id="incorrect"),
])
def test_403_in_drf_words_for_a_refused_key_is_a_refused_key(tmp_path, detail):
    body = ('{"detail": "%s"}' % detail).encode()
    with _answering(403, body, "application/json") as (url, asked):
        outcome = _night(tmp_path, url)

    assert (outcome.exit_code, outcome.message) == (
        2, f'the API at {url} refused the key (HTTP 403: "{detail}"); check the key in CEKURA_API_KEY')
    assert len(asked) == 1, asked


def test_403_without_permission_fails_only_its_project(tmp_path, dataset):
    listed = expected.listed_project_ids(dataset)
    victim = listed[1]
    with FakeCekuraApi(dataset, api_key=API_KEY, auth="403", faults=Faults(always={victim: "403"})) as api:
        outcome = _night(tmp_path, api.url)
        asked = api.request_count(endpoint="sessions", project_id=victim)

    assert outcome.exit_code == 1, outcome.message
    assert sorted(outcome.report.projects_failed) == [victim] and asked == 1
    with duckdb.connect(str(tmp_path / "cekura.duckdb"), read_only=True) as con:
        others = [p for p in listed if p != victim]
        assert expected.loaded_sessions(con) == expected.sessions(dataset, others)


CHALLENGE_PAGE = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>"


@pytest.mark.parametrize("status, content_type, headers, evidence", [
    pytest.param(403, "text/html; charset=UTF-8", (("cf-mitigated", "challenge"),),
                 "HTTP 403, cf-mitigated: challenge", id="cf-mitigated"),
    pytest.param(403, "text/html", (), "HTTP 403 with a web page on /user/v1/projects/", id="html-403"),
    pytest.param(403, "application/octet-stream", (), "HTTP 403 with a web page on /user/v1/projects/",
                 id="html-403-mislabelled"),
])
def test_firewall_challenge_has_its_own_line_and_is_not_retried(tmp_path, status, content_type, headers, evidence):
    with _answering(status, CHALLENGE_PAGE, content_type, headers) as (url, asked):
        outcome = _night(tmp_path, url)

    assert (outcome.exit_code, outcome.message) == (
        2, f"nothing loaded: a firewall or bot challenge stands in front of the API at {url} ({evidence}); "
           "no key gets past it and retrying will not help: ask the API's operator to allow this machine")
    assert len(asked) == 1, asked


def test_untrusted_certificate_is_tried_once(tmp_path, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with self_signed_server(tmp_path) as url:
        client = CekuraClient(url, API_KEY, policy=TEST_RETRY)
        with pytest.raises(Untrusted) as refused:
            client.list_projects()

    assert client.stats.requests == 1, "a certificate that fails verification was tried again"
    assert str(refused.value) == (
        f"TLS with {url} failed: certificate verify failed (self-signed certificate); if a proxy or firewall on "
        "your network re-signs TLS, set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to its CA certificate file")


def test_untrusted_certificate_line_names_the_bundle_it_was_checked_against(tmp_path):
    import certifi

    with self_signed_server(tmp_path) as url:
        result = run_cli(tmp_path, "run", "--base-url", url, "--db", str(tmp_path / "c.duckdb"),
                         REQUESTS_CA_BUNDLE=certifi.where())

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"cekura-sessions: nothing loaded: listing projects failed: TLS with {url} failed: certificate verify failed "
        f"(self-signed certificate) against the CA certificates in REQUESTS_CA_BUNDLE ({certifi.where()}); "
        "set REQUESTS_CA_BUNDLE or SSL_CERT_FILE to the CA certificate that signed the server's"], result.stderr
