"""One GET over a pool of keep-alive connections (urllib3), shared by every worker thread.

urllib3 directly rather than requests: at 500 listings, requests' per-request machinery cost
twice the fetch time of the same pool used bare (benchmarks/README.md). Kept from requests: the
proxy variables (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY; a proxy without a scheme is
http, user:password in it is sent as Proxy-Authorization), certificate checks against certifi's
bundle unless REQUESTS_CA_BUNDLE or SSL_CERT_FILE names another file or folder, and gzip.
Redirects are not followed (they could carry the key elsewhere): the caller reports them.
Retries are the caller's (tenacity); here a failed attempt is one exception.
"""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import DecodeError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from cekura_sessions.api.errors import ConfigError


class ConnectionFailed(Exception):
    """No answer: the connection failed or timed out. The message is short and key-free."""


class UndecodableBody(Exception):
    """An answer came, but its bytes could not be decoded as its Content-Encoding says."""


@dataclass(frozen=True)
class Answer:
    url: str  # as asked, query included
    status: int
    headers: urllib3.HTTPHeaderDict
    content: bytes


class Transport:
    def __init__(self, base_url: str, headers: dict[str, str], connections: int,
                 connect_timeout: float, read_timeout: float, answer_deadline: float) -> None:
        headers = {**headers, "Accept-Encoding": "gzip"}
        self._options = {
            "headers": headers,
            "timeout": urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            "retries": False,  # tenacity decides; a second retry layer would multiply attempts
            "redirect": False,  # a redirect is an answer to classify, never a way to carry the key elsewhere
            # read here, against a deadline for the whole answer: urllib3's read timeout applies to
            # each socket read, so a server that trickles the body would never time out (#1901)
            "preload_content": False,
        }
        self._answer_deadline = answer_deadline
        self._manager = _pool_manager(base_url, max(1, connections))
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        # the API's own pool, asked directly: a third cheaper per request than through the
        # manager (a plain-http proxy needs the manager, which sends it absolute URLs)
        proxied_http = isinstance(self._manager, urllib3.ProxyManager) and parts.scheme == "http"
        self._origin_pool = None if proxied_http else self._manager.connection_from_url(base_url)

    def get(self, url: str, params: dict[str, object] | None = None) -> Answer:
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        deadline = time.monotonic() + self._answer_deadline
        try:
            if self._origin_pool is not None and url.startswith(self._origin + "/"):
                response = self._origin_pool.urlopen("GET", url[len(self._origin):], **self._options)
            else:
                response = self._manager.urlopen("GET", url, **self._options)
            content = self._read(response, deadline)
        except NewConnectionError:  # refused, or the name did not resolve (a subclass of timeouts)
            raise ConnectionFailed("connection failed") from None
        except DecodeError:  # labelled gzip, not gzip (a misconfigured proxy)
            raise UndecodableBody("the answer said Content-Encoding: gzip but could not be decoded as gzip") from None
        except Urllib3Timeout:
            raise ConnectionFailed("timed out") from None
        except HTTPError:
            raise ConnectionFailed("connection failed") from None
        return Answer(url, response.status, response.headers, content)

    def _read(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        """The whole body, or ConnectionFailed once the deadline passes (the connection is then
        closed, not returned to the pool: the rest of the body may never come)."""
        chunks = []
        try:
            while chunk := response.read1(1 << 16):  # whatever one socket read brings, decoded
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    response.close()
                    raise ConnectionFailed(f"timed out: the answer took longer than {self._answer_deadline:g} s")
            if response.length_remaining:  # read1 can end early on a short chunk; finish it
                chunks.append(response.read())
        finally:
            response.release_conn()
        return b"".join(chunks)


def _pool_manager(base_url: str, connections: int) -> urllib3.PoolManager:
    options = {"num_pools": 4, "maxsize": connections, "block": False, **_certificates()}
    proxy = _proxy_for(base_url)
    if proxy:
        # an https target is tunnelled (CONNECT): the proxy never sees the key
        return _proxy_manager(proxy, options)
    return urllib3.PoolManager(**options)


def _certificates() -> dict[str, str]:
    given = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if not given:
        bundle = _certifi_bundle()
        return {"ca_certs": bundle} if bundle else {}  # else the system's default store
    path = Path(given)
    if path.is_dir():
        return {"ca_cert_dir": given}
    if not path.is_file():
        raise ConfigError(f"the certificate bundle {given} (REQUESTS_CA_BUNDLE or SSL_CERT_FILE) does not exist")
    return {"ca_certs": given}


def _proxy_manager(proxy: str, options: dict[str, object]) -> urllib3.ProxyManager:
    if "://" not in proxy:
        proxy = f"http://{proxy}"  # as requests reads "proxy.internal:3128"
    try:
        parts = urllib3.util.parse_url(proxy)
        if parts.scheme not in ("http", "https"):
            raise ValueError(parts.scheme)
    except ValueError:
        raise ConfigError("the proxy variable is not an http(s) URL; set it like http://proxy.internal:3128") from None
    headers = {}
    if parts.auth:  # user:password@ goes to the proxy as a header, not in the URL
        headers = urllib3.make_headers(proxy_basic_auth=unquote(parts.auth))
        proxy = parts._replace(auth=None).url
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)


def _proxy_for(base_url: str) -> str | None:
    parts = urlsplit(base_url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _certifi_bundle() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()
