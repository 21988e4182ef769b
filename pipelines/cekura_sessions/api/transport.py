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
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from cekura_sessions.api.errors import ConfigError
from cekura_sessions.api.urls import is_loopback


class ConnectionFailed(Exception):
    """No answer: the connection failed or timed out. The message is one key-free line that names
    where it tried to go and what to do (see connection_failure). `kind` says what a retry may
    change (failure_kind): "tls" (never: the certificate or the scheme is wrong), "refused" and
    "dropped" (what a restarting server gives), "dns", "timeout" or "other"."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


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
        self._timeouts = (connect_timeout, read_timeout)
        self._proxy = _proxy_for(base_url)
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
        except DecodeError:  # labelled gzip, not gzip (a misconfigured proxy)
            raise UndecodableBody("the answer said Content-Encoding: gzip but could not be decoded as gzip") from None
        except HTTPError as error:
            raise ConnectionFailed(connection_failure(error, url, self._proxy, *self._timeouts),
                                   failure_kind(error)) from None
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
                    raise ConnectionFailed(f"timed out: the answer took longer than {self._answer_deadline:g} s "
                                           f"({self._origin} sends it too slowly; see --answer-deadline)", "timeout")
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
        return _proxy_manager(proxy.url, options)
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


@dataclass(frozen=True)
class Proxy:
    url: str  # as the variable says it, credentials included
    variable: str  # HTTPS_PROXY, HTTP_PROXY or ALL_PROXY (either case in the environment)

    @property
    def shown(self) -> str:
        """The proxy for messages: scheme, host and port, never its user:password."""
        parts = urllib3.util.parse_url(self.url if "://" in self.url else f"http://{self.url}")
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _proxy_for(base_url: str) -> Proxy | None:
    parts = urlsplit(base_url)
    if is_loopback(parts.hostname or ""):
        # this machine's own API (a tunnel, the fake): a proxy cannot reach it, and a plain-http
        # root would hand it the key in clear text
        return None
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()  # keyed by scheme, lowercase, from *_PROXY in either case
    for scheme in (parts.scheme, "all"):
        if proxies.get(scheme):
            return Proxy(proxies[scheme], f"{scheme.upper()}_PROXY")
    return None


def connection_failure(error: HTTPError, url: str, proxy: Proxy | None, connect_timeout: float,
                       read_timeout: float) -> str:
    """One line for an attempt that got no answer: what failed, naming the URL's origin (and the
    proxy, when one was in the way), and what to do. urllib3 tells the causes apart by class."""
    parts = urlsplit(url)
    target, host = f"{parts.scheme}://{parts.netloc}", parts.hostname or "?"
    if isinstance(error, ProxyError):
        return (f"cannot reach {target} through the proxy {proxy.shown if proxy else '?'} "
                f"({proxy.variable if proxy else 'a *_PROXY variable'}): {_proxy_trouble(error.original_error)}; "
                f"check that proxy, or list {host} in NO_PROXY to connect directly")
    if isinstance(error, SSLError):
        return f"TLS with {target} failed: {_tls_trouble(error)}"
    if isinstance(error, NameResolutionError):  # before NewConnectionError, its base class
        return (f"cannot resolve the host name {host} of {target} (DNS: {_strerror(error.__cause__)}); "
                "check the base URL's host name and this machine's DNS and network")
    if isinstance(error, NewConnectionError):  # before ConnectTimeoutError, its base class
        cause = error.__cause__
        if isinstance(cause, ConnectionRefusedError):
            return (f"{target} refused the connection (nothing listens on port {parts.port or _default_port(parts.scheme)}"
                    " there); check the base URL's host and port, and that the API is up")
        return f"cannot connect to {target} ({_strerror(cause)}); check the network and any firewall in between"
    if isinstance(error, ConnectTimeoutError):
        return (f"{target} did not accept a connection within {connect_timeout:g} s (timed out); "
                "check the network and any firewall in between")
    if isinstance(error, ReadTimeoutError):
        return f"{target} stopped answering (timed out: nothing for {read_timeout:g} s)"
    if isinstance(error, ProtocolError):  # the connection dropped before the answer was whole
        inner = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], BaseException) else error
        return f"the connection to {target} dropped before the answer was complete ({_strerror(inner)})"
    return f"the connection to {target} failed ({_strerror(error)})"


def failure_kind(error: HTTPError) -> str:
    """What kind of failure an attempt without an answer was (ConnectionFailed.kind)."""
    if isinstance(error, ProxyError):
        return "other"
    if isinstance(error, SSLError):
        inner = error.args[0] if error.args and isinstance(error.args[0], ssl.SSLError) else None
        permanent = isinstance(inner, ssl.SSLCertVerificationError) or (
            inner is not None and inner.reason == "WRONG_VERSION_NUMBER")
        return "tls" if permanent else "other"  # a handshake cut short may be a restart
    if isinstance(error, NameResolutionError):
        return "dns"
    if isinstance(error, NewConnectionError):
        return "refused" if isinstance(error.__cause__, ConnectionRefusedError) else "other"
    if isinstance(error, (ConnectTimeoutError, ReadTimeoutError)):
        return "timeout"
    if isinstance(error, ProtocolError):
        return "dropped"
    return "other"


def _proxy_trouble(error: Exception) -> str:
    if isinstance(error, NameResolutionError):
        return "its host name does not resolve"
    if isinstance(error, NewConnectionError) and isinstance(error.__cause__, ConnectionRefusedError):
        return "it refused the connection (nothing listens on its port)"
    if isinstance(error, (NewConnectionError, ConnectTimeoutError)):
        return f"cannot connect to it ({_strerror(error.__cause__ or error)})"
    text = str(error)
    if text.startswith("Tunnel connection failed: "):  # the proxy's answer to CONNECT, e.g. 407
        return f"it answered {text.removeprefix('Tunnel connection failed: ')}"
    return _strerror(error)


def _tls_trouble(error: SSLError) -> str:
    inner = error.args[0] if error.args and isinstance(error.args[0], ssl.SSLError) else None
    if isinstance(inner, ssl.SSLCertVerificationError):
        bundle = next((f"{name} ({os.environ[name]})" for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
                       if os.environ.get(name)), None)
        if bundle:
            return (f"certificate verify failed ({inner.verify_message}) against the CA certificates in {bundle}; "
                    "set REQUESTS_CA_BUNDLE or SSL_CERT_FILE to the CA certificate that signed the server's")
        return (f"certificate verify failed ({inner.verify_message}); if a proxy or firewall on your network "
                "re-signs TLS, set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to its CA certificate file")
    if inner is not None and inner.reason == "WRONG_VERSION_NUMBER":
        return ("the server does not speak TLS there (wrong version number); if it serves plain http, "
                "check the scheme and port of the base URL")
    reason = (inner.reason or inner.strerror or str(inner)) if inner is not None else str(error)
    return f"{str(reason).lower().replace('_', ' ')}; check the base URL and REQUESTS_CA_BUNDLE"


def _strerror(error: BaseException | None) -> str:
    """The operating system's words for a socket error, without errno numbers or object reprs."""
    if error is None:
        return "unknown error"
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error).split("\n")[0]
    if not text or "(" in text and "=" in text:  # empty, or a repr of urllib3's connection object
        return type(error).__name__
    return text[:1].lower() + text[1:]


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _certifi_bundle() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()
