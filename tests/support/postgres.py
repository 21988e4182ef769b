"""A real PostgreSQL for the tests, from pip-installed binaries (pgserver ships PostgreSQL 16):
one server per test worker on a Unix socket, and a fresh database per test.

pgserver starts in 1 to 2 s; as root it runs the server as a system user it creates. Its URL
names the socket folder as `?host=`, which libpq and dlt read like any other URL.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# pgserver logs at INFO from its exit hook, after pytest has closed the stream it captured
logging.getLogger("pgserver").setLevel(logging.WARNING)


class PostgresServer:
    """`start(folder)` runs a server whose files live in `folder`; `new_database()` returns the
    URL of an empty database (or of a copy of another); `stop()` ends the server."""

    def __init__(self, folder: Path) -> None:
        import pgserver

        self._server: Any = pgserver.get_server(str(folder), cleanup_mode="stop")
        self.url = self._server.get_uri()

    def new_database(self, template: str | None = None) -> str:
        """The URL of a new database: empty, or a copy of the database the URL `template` names
        (CREATE DATABASE ... TEMPLATE, about 0.2 s of CPU where a night costs one to two seconds;
        no session may be connected to the template)."""
        import psycopg2

        name = f"t_{uuid.uuid4().hex[:12]}"
        copied = "" if template is None else f" template {urlsplit(template).path.lstrip('/')}"
        con = psycopg2.connect(self.url)
        try:
            con.autocommit = True  # CREATE DATABASE runs outside a transaction only
            con.cursor().execute(f"create database {name}{copied}")
        finally:
            con.close()
        return database_url(self.url, name)

    def stop(self) -> None:
        self._server.cleanup()


def database_url(server_url: str, name: str) -> str:
    """The server's URL naming database `name` (its socket folder and user kept)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def connect(url: str) -> Any:
    """A psycopg2 connection in autocommit mode."""
    import psycopg2

    con = psycopg2.connect(url)
    con.autocommit = True
    return con
