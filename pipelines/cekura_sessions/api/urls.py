"""Where the key may be sent: the configured API root only, and over https unless loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from cekura_sessions.api.endpoints import DEFAULT_BASE_URL
from cekura_sessions.api.errors import ConfigError, InsecureUrlError


def check_base_url(base_url: str) -> str:
    """The normalised base URL (no trailing slash); ConfigError or InsecureUrlError with a
    message that says what to fix."""
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
    except ValueError:  # such as an unclosed IPv6 bracket
        hostname = None
    if hostname is not None and (parts.username or parts.password):
        # Cekura takes the key in a header; a user:password in the URL would only reach logs
        # and error lines (never shown here)
        raise ConfigError(f"the base URL carries a user name or password before {hostname}; remove it, "
                          "the API key goes in CEKURA_API_KEY")
    if hostname is None or parts.scheme not in ("http", "https"):
        raise ConfigError(f"base URL {base_url!r} is not an http(s) URL; use something like {DEFAULT_BASE_URL}")
    if parts.query or parts.fragment or base_url.rstrip().endswith(("?", "#")):
        # every path is appended to the root: `?x=1` would become `?x=1/user/v1/projects/`
        raise ConfigError(f"the base URL {base_url!r} has a query string or fragment; give the API root alone, "
                          f"like {DEFAULT_BASE_URL}")
    if parts.scheme == "http" and not is_loopback(hostname):
        raise InsecureUrlError(f"refusing to send the API key over plain http to {hostname}; use https")
    return base_url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def on_api_root(base_url: str, link: str) -> str:
    """A `next` link as its path and query on the configured API root. DRF builds the link from
    the request's scheme and host, which behind a TLS-terminating proxy can say `http://` or
    name the app server (`http://web-1.internal:8000/...`): only its path and query are taken,
    so the key goes to the configured root only, over its scheme; a relative link works too."""
    parts = urlsplit(urljoin(base_url + "/", link))
    root = urlsplit(base_url)
    return urlunsplit((root.scheme, root.netloc, parts.path, parts.query, ""))


def with_limit(link: str, limit: int) -> str:
    """A limit/offset `next` link (one with `offset=`) asking for `limit` rows: DRF's
    LimitOffsetPagination ignores `page_size` and repeats its own default `limit` in the link,
    so the page size asked for goes in here; the server still caps it at its max_limit. Any
    other link is returned as it is (page numbers and cursors keep `page_size` in their links)."""
    parts = urlsplit(link)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name == "offset" for name, _ in query) or ("limit", str(limit)) in query:
        return link
    if any(name == "limit" for name, _ in query):
        query = [(name, str(limit) if name == "limit" else value) for name, value in query]
    else:
        query.append(("limit", str(limit)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
