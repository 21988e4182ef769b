"""PostgreSQL as a destination: a connection that says what failed without the password, and
the lock that keeps two runs off one database and dataset, from any machine.

The lock is a session advisory lock (pg_try_advisory_lock): PostgreSQL releases it when the
connection ends, so a run killed with -9 frees it like the flock does a DuckDB file. The
holder is named from pg_stat_activity, where each run's connection says who it is
(application_name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from cekura_sessions.destination.address import Destination, password_of, redacted
from cekura_sessions.destination.warehouse import PostgresWarehouse, WarehouseError

CONNECT_TIMEOUT_SECONDS = 10


class PostgresUnavailable(Exception):
    """The server cannot be reached or refused the login; one line, no password."""


class PostgresLockHeld(Exception):
    """Another run holds this database and dataset; the message names it."""


def connect(destination: Destination, application_name: str = "cekura-sessions") -> PostgresWarehouse:
    """A PostgresWarehouse (autocommit) on `destination`. Raises PostgresUnavailable, whose
    message names the database without its password and says what to check."""
    import psycopg2  # the `postgres` extra

    try:
        con = psycopg2.connect(destination.url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                               application_name=application_name[:63])
    except psycopg2.Error as error:
        detail = " ".join(str(error).split()).replace(destination.url or "", str(destination))
        raise PostgresUnavailable(f"cannot connect to {destination}: {_without_password(detail, destination)}; "
                                  "check the URL in --db or CEKURA_DB, and that the server is up") from None
    con.autocommit = True
    return PostgresWarehouse(con)


def lock_key(dataset: str) -> int:
    """The advisory lock's key for one dataset (a signed 64-bit integer, as PostgreSQL wants)."""
    digest = hashlib.blake2b(f"cekura_sessions:{dataset}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(warehouse: PostgresWarehouse, dataset: str) -> Iterator[None]:
    """Hold the run lock of `dataset` on this connection while the block runs. Raises
    PostgresLockHeld at once, naming the holder, when another session has it."""
    key = lock_key(dataset)
    (taken,) = warehouse.execute("select pg_try_advisory_lock(?)", [key]).fetchone()
    if not taken:
        raise PostgresLockHeld(f"another run holds the lock on {dataset} ({_holder(warehouse, key)})")
    try:
        yield
    finally:
        try:
            warehouse.execute("select pg_advisory_unlock(?)", [key])
        except WarehouseError:
            pass  # the connection is gone: PostgreSQL has released the lock with it


def _holder(warehouse: PostgresWarehouse, key: int) -> str:
    # an 8-byte key is stored as classid (high half) and objid (low half), both unsigned
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    row = warehouse.execute(
        "select a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local socket'), "
        "a.backend_start from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'advisory' and l.classid = ? and l.objid = ? and l.granted limit 1",
        [high, low],
    ).fetchone()
    if row is None:
        return "holder unknown"
    pid, application, address, since = row
    return f"{application or 'a session'}, server pid {pid}, from {address}, since {since:%Y-%m-%d %H:%M:%S %Z}"


def _without_password(text: str, destination: Destination) -> str:
    """libpq quotes parts of the connection string in some messages: never the password."""
    raw = urlsplit(destination.url or "").password  # libpq may quote it still percent-encoded
    for secret in {raw, password_of(destination.url or "")} - {None, ""}:
        text = text.replace(secret, "***")
    return redacted(text) if "://" in text else text
