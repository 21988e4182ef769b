"""When no answer comes, the one line says which URL, what failed (DNS, a refused connection, the
proxy, TLS, a dropped connection) and what to do; never "connection failed" alone, never a
proxy's password. Each cause is real and on loopback: a `.invalid` name (RFC 6761: it resolves
nowhere), a bound port nobody listens on, a proxy variable naming such a port, a TLS server with a
self-signed certificate, and the fake API spoken to in TLS."""

from __future__ import annotations

import http.server
import threading

import pytest
from cekura_sessions.api import transport
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support.ports import refused_port
from support.tls import self_signed_server

ENVIRONMENT = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
               "no_proxy", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
PROJECTS = "/user/v1/projects/"


@pytest.fixture(autouse=True)
def _no_proxy_or_bundle_of_this_machine(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def _failure(base_url: str) -> str:
    """The message of one GET of the projects list that gets no answer."""
    get = transport.Transport(base_url, {}, 1, 2.0, 2.0, 10.0).get
    with pytest.raises(transport.ConnectionFailed) as failed:
        get(base_url + PROJECTS)
    return str(failed.value)


def test_refused_connection_names_the_url_and_the_port():
    with refused_port() as port:
        message = _failure(f"http://127.0.0.1:{port}")

    assert message == (f"http://127.0.0.1:{port} refused the connection (nothing listens on port {port} there); "
                       "check the base URL's host and port, and that the API is up")


def test_unresolvable_host_names_the_host_and_dns():
    message = _failure("https://api.cekura.invalid")

    head = "cannot resolve the host name api.cekura.invalid of https://api.cekura.invalid (DNS: "
    tail = "); check the base URL's host name and this machine's DNS and network"
    assert message.startswith(head) and message.endswith(tail), message
    assert "Errno" not in message and "HTTPSConnection" not in message, message


@pytest.mark.parametrize("variable, base_url", [
    pytest.param("HTTPS_PROXY", "https://api.cekura.ai", id="https-proxy"),
    pytest.param("https_proxy", "https://api.cekura.ai", id="lowercase-https-proxy"),
    pytest.param("ALL_PROXY", "https://api.cekura.ai", id="all-proxy"),
    # plain http goes only to loopback, which never goes through a proxy (test_secrets.py)
])
def test_proxy_that_refuses_is_named_with_its_variable_and_without_its_password(monkeypatch, variable, base_url):
    with refused_port() as port:
        monkeypatch.setenv(variable, f"http://user:s3cret@127.0.0.1:{port}")
        message = _failure(base_url)

    host = base_url.split("//")[1].split(":")[0]
    assert message == (f"cannot reach {base_url} through the proxy http://127.0.0.1:{port} ({variable.upper()}): "
                       f"it refused the connection (nothing listens on its port); check that proxy, or list {host} "
                       "in NO_PROXY to connect directly")
    assert "s3cret" not in message and "user" not in message


def test_proxy_whose_name_does_not_resolve_says_so(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "proxy.invalid:3128")  # no scheme: http, as requests reads it

    message = _failure("https://api.cekura.ai")

    assert message == ("cannot reach https://api.cekura.ai through the proxy http://proxy.invalid:3128 (HTTPS_PROXY): "
                       "its host name does not resolve; check that proxy, or list api.cekura.ai in NO_PROXY to "
                       "connect directly")


def test_self_signed_certificate_says_certificate_verify_failed(tmp_path):
    with self_signed_server(tmp_path) as url:
        message = _failure(url)

    assert message == (f"TLS with {url} failed: certificate verify failed (self-signed certificate); if a proxy or "
                       "firewall on your network re-signs TLS, set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to its CA certificate file")


def test_tls_to_a_plain_http_server_says_it_does_not_speak_tls():
    """A plain-http server that answers what it cannot parse with a 400, as nginx and Python's
    http.server do (waitress waits for a request line that never comes: a timeout instead)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        message = _failure(url)
    finally:
        server.shutdown()
        server.server_close()

    assert message == (f"TLS with {url} failed: the server does not speak TLS there (wrong version number); if it "
                       "serves plain http, check the scheme and port of the base URL")


def test_dropped_connection_says_it_dropped():
    faults = Faults(script={("projects", None): ["drop"]})
    with FakeCekuraApi(generate(DataSpec(projects=1, sessions_per_project=1)), faults=faults) as api:
        message = _failure(api.url)

    assert message == (f"the connection to {api.url} dropped before the answer was complete "
                       "(remote end closed connection without response)")
