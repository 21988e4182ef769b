"""Where the key may be sent: the configured API root only, and over https unless loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urljoin, urlsplit

from cekura_sessions.api.endpoints import DEFAULT_BASE_URL
from cekura_sessions.api.errors import ConfigError, InsecureUrlError, MalformedBody


def check_base_url(base_url: str) -> str:
    """The normalised base URL (no trailing slash); ConfigError or InsecureUrlError with a
    message that says what to fix."""
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
    except ValueError:  # such as an unclosed IPv6 bracket
        hostname = None
    if hostname is None or parts.scheme not in ("http", "https"):
        raise ConfigError(f"base URL {base_url!r} is not an http(s) URL; use something like {DEFAULT_BASE_URL}")
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


def same_origin(base_url: str, link: str) -> str:
    """`link` (absolute or relative, as a `next` link comes) resolved against the API root;
    MalformedBody when it leaves the root's scheme and host, so the key never goes elsewhere."""
    absolute = urljoin(base_url + "/", link)
    if urlsplit(absolute)[:2] != urlsplit(base_url)[:2]:
        raise MalformedBody(f"pagination link leaves {base_url}")
    return absolute
