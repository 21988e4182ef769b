"""What the transport takes from the environment, as requests did: proxies and the CA bundle."""

from __future__ import annotations

import urllib3

from cekura_sessions import transport

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
    assert transport._pool_manager("https://x.test", 1).connection_pool_kw["ca_certs"] == certifi.where()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "b.pem"))
    assert transport._pool_manager("https://x.test", 1).connection_pool_kw["ca_certs"] == str(tmp_path / "b.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "a.pem"))
    assert transport._pool_manager("https://x.test", 1).connection_pool_kw["ca_certs"] == str(tmp_path / "a.pem")
