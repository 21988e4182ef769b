"""The API key and base URL a run will use, and where each came from, so a message can name the
variable or file to fix.

The plain aliases win (`CEKURA_API_KEY`, `--base-url`, `CEKURA_BASE_URL`); otherwise dlt resolves
`[sources.cekura]` exactly as it resolves the source's own arguments (same sections, same
providers: `SOURCES__CEKURA__*` variables, `.dlt/secrets.toml`, `.dlt/config.toml`, the global
folder), and its resolution trace says which provider answered. Resolved here, up front, so a
missing, blank or placeholder key stops the run before any request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.container import Container
from dlt.common.configuration.providers import EnvironProvider
from dlt.common.configuration.providers.toml import GLOBAL_ORIGIN_PREFIX
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.configuration.utils import get_resolved_traces
from dlt.common.typing import TSecretStrValue

from cekura_sessions.api.endpoints import DEFAULT_BASE_URL
from cekura_sessions.api.errors import ConfigError

# the value `.dlt/example.secrets.toml` ships with: a copy not yet edited must not reach the API
PLACEHOLDER_KEY = "your-cekura-api-key"
NO_KEY = "no API key: set CEKURA_API_KEY (or api_key under [sources.cekura] in .dlt/secrets.toml)"
_SOURCE_SECTIONS = ("sources", "cekura", "cekura")  # how dlt names the `cekura` source's arguments


@dataclass(frozen=True)
class Setting:
    """`value` (None: not set anywhere) and `origin`: where it came from, as people name it:
    `CEKURA_API_KEY`, `SOURCES__CEKURA__API_KEY`, `.dlt/secrets.toml`, `--base-url`, `the default`."""

    value: str | None
    origin: str

    def __repr__(self) -> str:  # never show a key
        return f"Setting(origin={self.origin!r})"


def api_key() -> Setting:
    """The key the run will send, checked: ConfigError (one line naming where the key came from)
    when there is none, it is blank, holds control characters, or is the example's placeholder."""
    if "CEKURA_API_KEY" in os.environ:
        key = Setting(os.environ["CEKURA_API_KEY"], "CEKURA_API_KEY")
    else:
        key = _from_dlt("api_key")
    _check(key)
    return key


def base_url(given: str | None) -> Setting:
    """The API root: `given` (the --base-url option), CEKURA_BASE_URL, dlt's configuration, or
    the default. Not checked here: the client checks it (api/urls.py)."""
    if given:
        return Setting(given, "--base-url")
    if os.environ.get("CEKURA_BASE_URL"):
        return Setting(os.environ["CEKURA_BASE_URL"], "CEKURA_BASE_URL")
    configured = _from_dlt("base_url")
    return configured if configured.value is not None else Setting(DEFAULT_BASE_URL, "the default")


def _check(key: Setting) -> None:
    if key.value is None:
        raise ConfigError(NO_KEY)
    value = key.value.strip()
    if not value:
        raise ConfigError(f"{key.origin} is set but empty; set it to your Cekura API key")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        # http.client would refuse it with an error that quotes the whole header
        raise ConfigError(f"the API key in {key.origin} contains control characters; check {key.origin}")
    if not value.isascii() or not value.isprintable():
        # a zero-width space or a non-breaking space pasted with the key: the header cannot carry
        # it (latin-1 at best) and no key holds one; the character itself is not shown, only where
        unusual = next(index for index, c in enumerate(value) if not (c.isascii() and c.isprintable()))
        raise ConfigError(f"the API key in {key.origin} contains an invisible or non-ASCII character (at position "
                          f"{unusual + 1} of {len(value)}), likely pasted with it; type it again in {key.origin}")
    if value == PLACEHOLDER_KEY:
        # the value itself is not repeated: whatever a key variable holds is masked in every line
        raise ConfigError(f"the API key in {key.origin} is still the placeholder of .dlt/example.secrets.toml; "
                          f"put your Cekura API key in {key.origin}")


@configspec
class _Cekura(BaseConfiguration):
    """The two arguments of the `cekura` source asked about here (dlt reads these hints at run time)."""

    api_key: Optional[TSecretStrValue] = None
    base_url: Optional[str] = None


def _from_dlt(name: str) -> Setting:
    traces = get_resolved_traces()
    seen = len(traces.resolved_traces)
    try:
        resolved = resolve_configuration(_Cekura(), sections=_SOURCE_SECTIONS)
    except Exception as error:  # noqa: BLE001 - a broken TOML file or a value of the wrong type
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cannot read [sources.cekura] from dlt's configuration: {first}") from None
    value = getattr(resolved, name)
    if value is None:
        return Setting(None, "nowhere")
    answered = [t for t in traces.resolved_traces[seen:] if t.key == name and t.value is not None]
    return Setting(str(value), _origin(answered[-1]) if answered else "dlt's configuration")


def _origin(trace: Any) -> str:
    """A dlt resolution trace as people name its source: the variable, or the file's path."""
    if trace.provider_name == EnvironProvider().name:
        return EnvironProvider.get_key_name(trace.key, *trace.sections)
    location = trace.provider_location or ""
    run_context = Container()[PluggableRunContext]
    in_global = location.startswith(GLOBAL_ORIGIN_PREFIX)
    for provider in run_context.providers.providers:
        if provider.name != trace.provider_name:
            continue
        for path in getattr(provider, "present_locations", []):
            global_path = os.path.abspath(path).startswith(os.path.abspath(run_context.context.global_dir) + os.sep)
            if os.path.basename(path) == location.removeprefix(GLOBAL_ORIGIN_PREFIX) and global_path == in_global:
                return os.path.normpath(path)
    return location or trace.provider_name
