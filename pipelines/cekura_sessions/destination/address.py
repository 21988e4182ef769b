"""What `--db` / `CEKURA_DB` names: a DuckDB file (the default), a PostgreSQL database
(`postgresql://user:password@host:port/dbname`, libpq parameters such as `?host=/socket/dir`
and `sslmode=require` included) or, untested here, a MotherDuck database (`md:name`).

The password is part of the URL people pass, and must never reach a log line, an exception,
the ledger or dlt's folder: `str()` of a Destination shows the URL with the password replaced,
and only `url` (used to connect) holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

DUCKDB, POSTGRES, MOTHERDUCK = "duckdb", "postgres", "motherduck"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_HIDDEN = "***"


class DestinationError(ValueError):
    """`--db` names no destination this tool can write to; the message says what to pass."""


@dataclass(frozen=True)
class Destination:
    """`kind`: duckdb, postgres or motherduck; `path`: the DuckDB file (duckdb only); `url`: the
    connection URL, password included (never shown: print the Destination instead)."""

    kind: str
    path: Path | None = None
    url: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        if self.kind == DUCKDB:
            return str(self.path)
        return redacted(self.url or "")

    @property
    def is_file(self) -> bool:
        return self.kind == DUCKDB

    @property
    def database_name(self) -> str:
        """The PostgreSQL database, or the DuckDB file's name."""
        if self.kind == DUCKDB:
            return self.path.name if self.path else ""
        return unquote(urlsplit(self.url or "").path.lstrip("/")) or ""


def parse_destination(value: str) -> Destination:
    """`value` as a Destination. Raises DestinationError (one line, no password) for a URL
    without a database name, or a scheme this tool does not write to."""
    text = value.strip()
    if not text:
        raise DestinationError("--db is empty; pass a DuckDB file path or a postgresql:// URL")
    if text.startswith(("md:", "motherduck:")):
        return Destination(MOTHERDUCK, url=text)
    parts = urlsplit(text)
    if parts.scheme in _POSTGRES_SCHEMES:
        if not parts.path.strip("/"):
            raise DestinationError(f"{redacted(text)} names no database; add it after the host, "
                                   "for example postgresql://user:password@host:5432/analytics")
        return Destination(POSTGRES, url=text)
    if "://" in text:
        raise DestinationError(f"{parts.scheme}:// is not a destination this tool writes to; pass a DuckDB file "
                               "path or a postgresql:// URL")
    return Destination(DUCKDB, path=Path(text).expanduser())


def password_of(url: str) -> str | None:
    """The password a URL carries, decoded (in its user part or a `password=` parameter), or None:
    what every log line must mask."""
    if "://" not in url:
        return None
    parts = urlsplit(url)
    if parts.password:
        return unquote(parts.password)
    return (parse_qs(parts.query).get("password") or [None])[0]


def redacted(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, colon, password = user.partition(":")
        netloc = f"{name}{colon}{_HIDDEN if password else ''}@{host}"
    query = parts.query
    if query:
        pairs = parse_qs(query, keep_blank_values=True)
        if "password" in pairs:
            pairs["password"] = [_HIDDEN]
        query = "&".join(f"{key}={quote(v, safe='/*')}" for key, values in pairs.items() for v in values)
    if "://" in url:  # urlunsplit drops an empty host's `//` (postgresql:///db?host=/socket)
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    return urlunsplit(parts._replace(netloc=netloc, query=query))
