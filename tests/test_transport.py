"""What the transport takes from the environment: proxies and the certificate bundle."""

from __future__ import annotations

import urllib3
from cekura_sessions.api import transport

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


def _clear(monkeypatch):
    for name in (*PROXY_VARIABLES, "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_https_goes_through_the_https_proxy_unless_no_proxy_names_the_host(monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert isinstance(transport._pool_manager("https://api.cekura.ai", 4), urllib3.ProxyManager)

    monkeypatch.setenv("NO_PROXY", "api.cekura.ai")
    pool = transport._pool_manager("https://api.cekura.ai", 4)
    assert type(pool) is urllib3.PoolManager


def test_no_proxy_variables_mean_a_direct_pool(monkeypatch):
    _clear(monkeypatch)
    assert type(transport._pool_manager("https://api.cekura.ai", 4)) is urllib3.PoolManager


def test_ca_bundle_comes_from_requests_ca_bundle_then_ssl_cert_file_then_certifi(monkeypatch, tmp_path):
    import certifi

    _clear(monkeypatch)
    (tmp_path / "a.pem").write_text("")
    (tmp_path / "b.pem").write_text("")
    assert transport._pool_manager("https://x.test", 1).connection_pool_kw["ca_certs"] == certifi.where()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "b.pem"))
    assert transport._pool_manager("https://x.test", 1).connection_pool_kw["ca_certs"] == str(tmp_path / "b.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "a.pem"))
    assert transport._pool_manager("https://x.test", 1).connection_pool_kw["ca_certs"] == str(tmp_path / "a.pem")


def test_a_proxy_without_scheme_is_http_and_its_credentials_go_in_a_header(monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "user:p%40ss@proxy.internal:3128")

    pool = transport._pool_manager("https://api.cekura.ai", 4)

    assert isinstance(pool, urllib3.ProxyManager)
    assert (pool.proxy.scheme, pool.proxy.host, pool.proxy.port, pool.proxy.auth) == ("http", "proxy.internal", 3128, None)
    assert pool.proxy_headers == urllib3.make_headers(proxy_basic_auth="user:p@ss")


def test_a_certificate_folder_is_used_as_one(monkeypatch, tmp_path):
    _clear(monkeypatch)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))
    kw = transport._pool_manager("https://x.test", 1).connection_pool_kw
    assert kw["ca_cert_dir"] == str(tmp_path) and "ca_certs" not in kw


def test_refused_connection_says_refused_not_timed_out(monkeypatch):
    import socket

    _clear(monkeypatch)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    get = transport.Transport(f"http://127.0.0.1:{port}", {}, 1, 2, 2, 10).get
    try:
        get(f"http://127.0.0.1:{port}/x")
    except transport.ConnectionFailed as error:
        assert "refused the connection" in str(error) and "timed out" not in str(error), str(error)
    else:
        raise AssertionError("a closed port answered")
